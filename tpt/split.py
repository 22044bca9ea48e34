"""Prune, part 2: split kept traces into train and eval files BY QUESTION, and keep held-out questions out.

A question is its idt; two idts whose question text is the same after normalisation (case and whitespace
folded) are one question too, so no question reaches both files however many traces it has. (The original
shuffled traces, and its own ev.json shares 72 of 200 records with math2b_2k.json.)
"""
import random

from tpt.io import DataError, normalize_text, read_questions


def group_by_question(records):
    """Lists of record indices, one per question (same idt or same normalised text), in first-seen order."""
    parent = list(range(len(records)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_by_key = {}
    for i, rec in enumerate(records):
        for key in (("idt", rec["idt"]), ("text", normalize_text(rec["question"]))):
            if key in first_by_key:
                a, b = root(first_by_key[key]), root(i)
                parent[max(a, b)] = min(a, b)
            else:
                first_by_key[key] = i
    groups = {}
    for i in range(len(records)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def split_by_question(records, train_size, seed=0, eval_size=0):
    """(train, eval): shuffled whole questions; train takes questions while they fit in train_size traces,
    eval takes the rest (at most eval_size traces when eval_size > 0, again whole questions only)."""
    if train_size < 0 or eval_size < 0:
        raise ValueError("train_size and eval_size must be >= 0")
    groups = group_by_question(records)
    random.Random(seed).shuffle(groups)
    train, rest = [], []
    for group in groups:
        (train if len(train) + len(group) <= train_size else rest).extend(group)
    rest, evals = set(rest), []
    for group in (g for g in groups if g[0] in rest):
        if eval_size and len(evals) + len(group) > eval_size:
            continue
        evals.extend(group)
    return [records[i] for i in train], [records[i] for i in evals]


def find_overlap(records, others):
    """[(record index, index in others)] of every record whose normalised question text is also one of others'
    (the first such). The one overlap check: the train/test guard, held-out files and Train's eval set use it."""
    first = {}
    for j, q in enumerate(others):
        first.setdefault(normalize_text(q["question"]), j)
    return [(i, first[key]) for i, r in enumerate(records) if (key := normalize_text(r["question"])) in first]


def check_or_drop_held_out(records, exclude_paths, drop=False, source="input"):
    """The records with held-out questions removed (drop=True), or a DataError naming the first one."""
    if not exclude_paths:
        return records, 0
    held_out, held_out_paths = [], []
    for path in exclude_paths:
        questions = read_questions(path, unique_idt=False)
        held_out += questions
        held_out_paths += [path] * len(questions)
    hits = find_overlap(records, held_out)
    if hits and not drop:
        i, j = hits[0]
        raise DataError(f"{source}: record {i} (idt {records[i]['idt']!r}): question appears in held-out file "
                        f"{held_out_paths[j]} ({len(hits)} records in all); pass --drop_excluded to drop them")
    bad = {i for i, _ in hits}
    return [r for i, r in enumerate(records) if i not in bad], len(bad)
