"""Prune, part 1: score a folder of sampled solutions and keep the correct traces.

A samples folder holds e0.json ... e{N-1}.json (one record per question each). Scoring writes beside them:
  scored.json             one record per (question, sample): qnum, sample (the e-file index), final_answer
                          (None = no answer found), strict_answer, correct, strict_correct (+ finish_reason,
                          num_tokens when the sample records them)
  pass_at_k_results.json  the summary (pass@k for every k <= N, maj@k, strict figures, rates, counts)
  pass_at_k_results.csv   the original's rows `Metric,Score`, so its users' scripts keep working
  correct_answers.json    the kept traces as questions {idt, question, solution, solnum} (+ origin: the Think
                          pass that made it, when the samples say; a hinted trace that leans on its hint in words
                          is never kept, see tpt.prompt.leans_on_hint)
Every file is read and validated before anything is written, and every write is atomic.
"""
import csv
import io
import json
import os
from operator import itemgetter

from tpt.extract import LMEVAL_FILTERS, REFERENCE_REGEXES, extract_answer, extract_pair, is_correct, number_text
from tpt.io import (DataError, check_samples, normalize_text, read_json, read_samples, sample_paths, write_json,
                    write_text)
from tpt.layout import CSV_FILE, KEPT_FILE, SCORED_FILE, SUMMARY_FILE
from tpt.metrics import maj_at_k, mean_pass_at_k, pass1_ci95
from tpt.prompt import LMEVAL_VERSION, leans_on_hint


def load_samples_dir(samples_dir, questions, num_samples):
    """Read and validate e0.json ... e{N-1}.json: returns (the questions sampled, one record list per file).

    The questions sampled are those of e0.json (a run with --limit samples part of a question file, as the
    original scored its samples against the whole data/gsm8ktrain.json); every file must hold exactly them.
    """
    if num_samples < 1:
        raise DataError(f"{samples_dir}: --num_samples must be at least 1, got {num_samples}")
    if not os.path.isdir(samples_dir):
        raise DataError(f"{samples_dir}: samples folder not found")
    paths = sample_paths(samples_dir, num_samples)
    first = read_samples(paths[0])
    qnums = {rec["qnum"] for rec in first}
    sampled = [q for q in questions if q["idt"] in qnums]
    return sampled, [check_samples(paths[0], first, sampled)] + [read_samples(p, sampled) for p in paths[1:]]


def score_samples(questions, sample_files):
    """One scored record per (question, sample), in question order then sample order."""
    order = [q["idt"] for q in questions]
    # Sample files list their questions in the question file's order (Think writes them so); any other
    # order is put right here.
    columns = [records if [r["qnum"] for r in records] == order else
               [{r["qnum"]: r for r in records}[idt] for idt in order] for records in sample_files]
    scored = []
    append = scored.append
    for idt, want, recs in zip(order, [number_text(q["solnum"]) for q in questions], zip(*columns)):
        for index, rec in enumerate(recs):
            answer, strict = extract_pair(rec["solution"])
            # Our modes spell equal numbers alike, so string equality with the gold's spelling is exact.
            row = {"qnum": idt, "sample": index, "final_answer": answer, "strict_answer": strict,
                   "correct": answer is not None and answer == want,
                   "strict_correct": strict is not None and strict == want}
            if "finish_reason" in rec:
                row["finish_reason"] = rec["finish_reason"]
            if "num_tokens" in rec:
                row["num_tokens"] = rec["num_tokens"]
            append(row)
    return scored


def summarize(scored, num_samples, ks=None):
    """The summary dict written as pass_at_k_results.json."""
    n = num_samples
    ks = sorted({1, n, *(k for k in (ks or []) if 1 <= k <= n)})
    total = len(scored)
    # score_samples writes each question's n samples together: per-question lists are slices.
    starts = range(0, total, n)
    flags = list(map(itemgetter("correct"), scored))
    strict_flags = list(map(itemgetter("strict_correct"), scored))
    all_answers = list(map(itemgetter("final_answer"), scored))
    flags_by_question = [flags[i:i + n] for i in starts]
    correct = list(map(sum, flags_by_question))
    strict = [sum(strict_flags[i:i + n]) for i in starts]
    answers = [all_answers[i:i + n] for i in starts]
    summary = {"num_questions": len(correct), "num_samples": n, "num_scored": total}
    for k in range(1, n + 1):
        summary[f"pass@{k}"] = mean_pass_at_k(correct, n, k)
    for k in ks:
        summary[f"maj@{k}"] = maj_at_k(answers, flags_by_question, k)
    summary["strict_pass@1"] = mean_pass_at_k(strict, n, 1)
    summary[f"strict_pass@{n}"] = mean_pass_at_k(strict, n, n)
    summary["pass@1_ci95"] = list(pass1_ci95(correct, n))
    summary["strict_pass@1_ci95"] = list(pass1_ci95(strict, n))
    summary["num_correct"] = sum(correct)
    summary["num_strict_correct"] = sum(strict)
    summary["num_no_answer"] = all_answers.count(None)
    summary["num_wrong_answer"] = total - summary["num_correct"] - summary["num_no_answer"]
    summary["num_solved_questions"] = sum(c > 0 for c in correct)
    summary["format_rate"] = (total - list(map(itemgetter("strict_answer"), scored)).count(None)) / total if total else 0.0
    summary["no_answer_rate"] = summary["num_no_answer"] / total if total else 0.0
    reasons = [r["finish_reason"] for r in scored if "finish_reason" in r and r["finish_reason"] is not None]
    # Over the samples that report a finish_reason; None when none does (e.g. files from the original).
    summary["truncation_rate"] = sum(x == "length" for x in reasons) / len(reasons) if reasons else None
    tokens = [r["num_tokens"] for r in scored if "num_tokens" in r and isinstance(r["num_tokens"], (int, float))]
    summary["mean_num_tokens"] = sum(tokens) / len(tokens) if tokens else None
    summary["ks"] = ks
    return summary


def select_kept(scored, questions, samples_by_qnum, max_per_question=1, strict_only=False, keep_truncated=False):
    """The correct traces to train on, as question records {idt, question, solution, solnum}.

    samples_by_qnum: for each e-file, a dict {qnum: sample record}.

    Per question, in sample order: drop wrong and no-answer traces, traces cut by the token limit
    (finish_reason == "length") unless keep_truncated, non-strict traces if strict_only, and exact duplicates
    (after whitespace and case folding), and hinted traces (origin "hint") that lean on the hint in words;
    then keep at most max_per_question (0 = all). Returns (kept, number of correct hinted traces dropped as
    leaning on the hint).
    """
    by_idt = {q["idt"]: q for q in questions}
    kept, kept_texts, hint_leaks = [], {}, 0
    for row in filter(itemgetter("strict_correct" if strict_only else "correct"), scored):
        if not keep_truncated and row.get("finish_reason") == "length":
            continue
        idt = row["qnum"]
        sample = samples_by_qnum[row["sample"]][idt]
        solution = sample["solution"]
        if sample.get("origin") == "hint" and leans_on_hint(solution):
            hint_leaks += 1
            continue
        earlier = kept_texts.setdefault(idt, [])
        if max_per_question and len(earlier) >= max_per_question:
            continue
        key = normalize_text(solution) if earlier else None  # the first trace of a question needs no key
        if earlier and key in (normalize_text(s) for s in earlier):
            continue
        earlier.append(solution)
        q = by_idt[idt]
        kept.append({"idt": idt, "question": q["question"], "solution": solution, "solnum": q["solnum"]}
                    | ({"origin": sample["origin"]} if "origin" in sample else {}))
    return kept, hint_leaks


_ENCODE = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode


def _json_list(records):
    """A JSON list with one record per line: readable, and written by the fast C encoder (indent is not)."""
    return "[\n" + ",\n".join(map(_ENCODE, records)) + "\n]\n"


def _csv_text(summary):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Metric", "Score"])
    n = summary["num_samples"]
    first = ["pass@1", f"pass@{n}"]  # the original's two rows, in its order
    for key in first + [k for k in summary if k not in first]:
        value = summary[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.writerow([key, value])
    return buf.getvalue()


def score_samples_dir(samples_dir, questions, num_samples, ks=None, max_per_question=1, strict_only=False,
                      keep_truncated=False):
    """Score e0..e{N-1}.json in samples_dir, write the four outputs there, return the summary dict."""
    questions, sample_files = load_samples_dir(samples_dir, questions, num_samples)
    return score_loaded(samples_dir, questions, sample_files, ks, max_per_question, strict_only, keep_truncated)


def score_loaded(samples_dir, questions, sample_files, ks=None, max_per_question=1, strict_only=False,
                 keep_truncated=False):
    """score_samples_dir for files already read by load_samples_dir (evmath.py validates every folder first)."""
    scored = score_samples(questions, sample_files)
    indexed = [{rec["qnum"]: rec for rec in records} for records in sample_files]
    kept, hint_leaks = select_kept(scored, questions, indexed, max_per_question, strict_only, keep_truncated)
    summary = summarize(scored, len(sample_files), ks)
    summary["num_kept"] = len(kept)
    summary["num_kept_questions"] = len({r["idt"] for r in kept})
    summary["num_hint_leaks"] = hint_leaks
    summary["max_per_question"] = max_per_question
    summary["strict_only"] = strict_only
    summary["keep_truncated"] = keep_truncated
    # Compact, by the C encoder: indenting 74,730 records would cost more than scoring them.
    write_text(os.path.join(samples_dir, SCORED_FILE),
               json.dumps(scored, separators=(",", ":"), check_circular=False) + "\n")
    write_text(os.path.join(samples_dir, KEPT_FILE), _json_list(kept))
    write_json(os.path.join(samples_dir, SUMMARY_FILE), summary)
    write_text(os.path.join(samples_dir, CSV_FILE), _csv_text(summary))
    return summary


def lmeval_columns(scored, questions, sample_files, task):
    """Add to every scored row the answer and verdict of the harness's two filters of `task` (LMEVAL_FILTERS):
    lmeval_strict_match(_correct), lmeval_flexible_extract(_correct). Rows in score_samples' order."""
    by_qnum = [{r["qnum"]: r for r in records} for records in sample_files]
    gold = {q["idt"]: q["solnum"] for q in questions}
    for row in scored:
        text = by_qnum[row["sample"]][row["qnum"]]["solution"]
        for name, mode in LMEVAL_FILTERS[task].items():
            key = "lmeval_" + name.replace("-", "_")
            answer = extract_answer(text, mode)
            row[key] = answer
            row[key + "_correct"] = is_correct(answer, gold[row["qnum"]], mode)


def lmeval_summary(scored, num_samples, task):
    """pass@1 (the harness's exact_match when greedy), its 95% interval and pass@N under each of the harness's
    filters, and which task's filters those are."""
    n = num_samples
    out = {"lmeval_filters": {f"lmeval_{name.replace('-', '_')}": {"task": "gsm8k" if task == "tpt" else task,
                                                                    "filter": name, "regex": REFERENCE_REGEXES[mode]}
                              for name, mode in LMEVAL_FILTERS[task].items()},
           "lmeval_version": LMEVAL_VERSION}
    for name in LMEVAL_FILTERS[task]:
        key = "lmeval_" + name.replace("-", "_")
        correct = [sum(r[key + "_correct"] for r in scored[i:i + n]) for i in range(0, len(scored), n)]
        out[f"{key}_pass@1"] = mean_pass_at_k(correct, n, 1)
        out[f"{key}_pass@1_ci95"] = list(pass1_ci95(correct, n))
        out[f"{key}_pass@{n}"] = mean_pass_at_k(correct, n, n)
        out[f"{key}_no_answer_rate"] = sum(r[key] is None for r in scored) / len(scored) if scored else 0.0
    return out


def score_eval_dir(samples_dir, questions, num_samples, task):
    """Eval's scoring: score_samples_dir's outputs, then (beside ours) the harness's two filters of `task` in
    every scored.json row and as lmeval_* figures in pass_at_k_results.json (and .csv), with `task` itself."""
    summary = score_samples_dir(samples_dir, questions, num_samples)
    questions, sample_files = load_samples_dir(samples_dir, questions, num_samples)
    scored = read_json(os.path.join(samples_dir, SCORED_FILE))
    lmeval_columns(scored, questions, sample_files, task)
    summary = {"task": task} | summary | lmeval_summary(scored, num_samples, task)
    write_text(os.path.join(samples_dir, SCORED_FILE),
               json.dumps(scored, separators=(",", ":"), check_circular=False) + "\n")
    write_json(os.path.join(samples_dir, SUMMARY_FILE), summary)
    write_text(os.path.join(samples_dir, CSV_FILE), _csv_text(summary))
    return summary


def format_summary(summary):
    """The one-line summary every stage prints."""
    n = summary["num_samples"]
    lo, hi = summary["pass@1_ci95"]
    parts = [
        f"questions {summary['num_questions']}",
        f"samples {n}",
        f"pass@1 {summary['pass@1']:.4f} [{lo:.3f}, {hi:.3f}]",
        f"pass@{n} {summary[f'pass@{n}']:.4f}",
        f"maj@{n} {summary[f'maj@{n}']:.4f}",
        f"strict pass@1 {summary['strict_pass@1']:.4f}",
        f"format {summary['format_rate']:.3f}",
        f"no answer {summary['no_answer_rate']:.3f}",
    ]
    if summary.get("truncation_rate") is not None:
        parts.append(f"truncated {summary['truncation_rate']:.3f}")
    for key, what in summary.get("lmeval_filters", {}).items():
        parts.append(f"{what['task']} {what['filter']} pass@1 {summary[f'{key}_pass@1']:.4f}")
    if "num_kept" in summary:
        parts.append(f"kept {summary['num_kept']}")
    if summary.get("num_hint_leaks"):
        parts.append(f"dropped as leaning on the hint {summary['num_hint_leaks']}")
    return " | ".join(parts)
