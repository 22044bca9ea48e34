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


def held_out_texts(paths):
    """Normalised question texts of the held-out files (question files: TPT JSON, JSONL or GSM8K jsonl)."""
    texts = {}
    for path in paths:
        for q in read_questions(path, unique_idt=False):
            texts.setdefault(normalize_text(q["question"]), path)
    return texts


def find_held_out(records, texts):
    """[(record index, held-out file)] for every record whose normalised question is held out."""
    return [(i, texts[normalize_text(r["question"])]) for i, r in enumerate(records)
            if normalize_text(r["question"]) in texts]


def check_or_drop_held_out(records, exclude_paths, drop=False, source="input"):
    """The records with held-out questions removed (drop=True), or a DataError naming the first one."""
    if not exclude_paths:
        return records, 0
    hits = find_held_out(records, held_out_texts(exclude_paths))
    if hits and not drop:
        i, path = hits[0]
        raise DataError(f"{source}: record {i} (idt {records[i]['idt']!r}): question appears in held-out file "
                        f"{path} ({len(hits)} records in all); pass --drop_excluded to drop them")
    bad = {i for i, _ in hits}
    return [r for i, r in enumerate(records) if i not in bad], len(bad)
