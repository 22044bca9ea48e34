"""The report: did a round help, and was it the answers or only the format?

Input: one scored Eval folder per round, in order (e*.json, scored.json, pass_at_k_results.json, manifest.json).
A loop's round folder also holds think/, data/ and model/ beside eval/; their manifests give the stages' speed
and wall time and Prune's kept traces. Anything missing there shows as "–"; the Eval folder's scored.json and
pass_at_k_results.json are required. The scorer's figures are read, never recomputed here; the ledger and the
paired tests are computed from scored.json.

Think passes (think/, and with runs/loop.sh RESAMPLE_N / RATIONALIZE think_resample/ and think_hint/): per round,
the distinct training questions kept by origin (sample, resample, hint) and the Think tokens spent per kept
question. Difficulty: the test questions are bucketed by the first round's (the base model's) per-question pass
rate (hard: no sample right, easy: every sample right, medium: between) and every round's pass@1 is shown per
bucket, so a round that only helped the easy questions shows it.

Paired tests of round r against round r-1, over the test questions both rounds scored:
  * paired bootstrap: per question, d = (its pass@1 in r) - (its pass@1 in r-1), pass@1 = correct samples /
    samples; questions are resampled with replacement (seeded) and the mean of d recomputed; the 95% interval
    is the 2.5th-97.5th percentile. The same for strict pass@1 and for the format rate (samples with a strict
    `#### N` line). A change is significant when its interval excludes 0. The verdict rests on these.
  * McNemar, exact and two-sided, on the per-question outcome "solved by at least one sample": gained = unsolved
    before and solved now, lost = the reverse; p = min(1, 2 * P[Binomial(gained + lost, 1/2) <= min(gained, lost)]).
Beside each difference stands the smallest change this many questions could detect: the paired minimal detectable
effect at 80% power and two-sided 5% level, (z_0.975 + z_0.80) * sd(d) / sqrt(questions), so "no significant
change" reads as "no change larger than that".
"""
import csv
import io
import math
import os

from tpt.io import DataError, atomic_file, read_json, sample_paths, write_json, write_text
from tpt.layout import (DATA, EVAL, EVAL_FILE, KEPT_FILE, MODEL, SCORED_FILE, SUMMARY_FILE, THINK, THINK_PASSES,
                        TRAIN_FILE, round_folders)
from tpt.stage import MANIFEST, MANIFESTS

CONFIDENCE_LEVEL = 0.95
POWER = 0.80
METRICS = ("answer", "strict", "format")  # per-question rates the paired bootstrap compares


# ---------------------------------------------------------------- reading

def _stage_folders(eval_dir):
    """{stage: folder} of the round that eval_dir belongs to (loop layout: think/, data/, model/ beside eval/)."""
    folders = round_folders(os.path.dirname(os.path.abspath(eval_dir)))
    return {THINK: folders[THINK], DATA: folders[DATA], MODEL: folders[MODEL], EVAL: os.path.abspath(eval_dir)}


def _read_scored(path):
    rows = read_json(path)
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: expected a non-empty JSON list of scored samples")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{path}: record {i}: expected an object")
        for key in ("qnum", "sample", "correct", "strict_correct"):
            if key not in row:
                raise DataError(f"{path}: record {i}: missing field '{key}'")
        for key in ("correct", "strict_correct"):
            if not isinstance(row[key], bool):
                raise DataError(f"{path}: record {i}: field '{key}' must be true or false")
    return rows


def per_question(scored):
    """{qnum: {samples, answer, strict, format}} counts, in the order questions first appear."""
    out = {}
    for row in scored:
        q = out.setdefault(row["qnum"], {"samples": 0, "answer": 0, "strict": 0, "format": 0})
        q["samples"] += 1
        q["answer"] += row["correct"]
        q["strict"] += row["strict_correct"]
        q["format"] += row.get("strict_answer") is not None
    return out


def _stage_records(folders):
    """One row per manifest found in the round's stage folders: stage, script, tokens/s, wall seconds, train loss."""
    rows = []
    for stage, folder in folders.items():
        for path in [os.path.join(folder, name) for name in MANIFESTS if os.path.isfile(os.path.join(folder, name))]:
            m = read_json(path)
            if not isinstance(m, dict):
                continue
            rows.append({"stage": stage, "file": os.path.basename(path), "script": m.get("script"),
                         "tokens_per_second": m.get("tokens_per_second"), "wall_seconds": m.get("wall_seconds"),
                         "train_loss": m.get("train_loss")})
    return rows


def _count(path):
    if not os.path.isfile(path):
        return None
    data = read_json(path)
    return len(data) if isinstance(data, (list, dict)) else None


def _mean_chars(eval_dir, num_samples):
    lengths = []
    for path in sample_paths(eval_dir, num_samples or 0):
        if not os.path.isfile(path):
            return None
        lengths += [len(r.get("solution", "")) for r in read_json(path) if isinstance(r, dict)]
    return sum(lengths) / len(lengths) if lengths else None


def read_think_passes(round_dir):
    """Per Think pass found in round_dir: its folder, questions, samples, tokens, traces and questions kept by
    origin (records without one take their pass's), and correct hinted traces dropped as leaning on the hint."""
    passes = []
    for name, origin in THINK_PASSES.items():
        manifest_path = os.path.join(round_dir, name, MANIFEST)
        if not os.path.isfile(manifest_path):
            continue
        m = read_json(manifest_path)
        kept_path = os.path.join(round_dir, name, KEPT_FILE)
        kept = read_json(kept_path) if os.path.isfile(kept_path) else []
        summary_path = os.path.join(round_dir, name, SUMMARY_FILE)
        summary = read_json(summary_path) if os.path.isfile(summary_path) else {}
        by_origin = {}
        for rec in kept:
            by_origin.setdefault(rec.get("origin", origin), set()).add(rec.get("idt", rec.get("id")))
        passes.append({"pass": name, "questions": m.get("num_questions"), "samples": m.get("num_samples"),
                       "tokens": m.get("generated_tokens") or 0, "kept_traces": len(kept),
                       "kept_questions": {o: sorted(q, key=str) for o, q in by_origin.items()},
                       "hint_leaks": summary.get("num_hint_leaks")})
    return passes


def think_totals(passes):
    """A round's distinct kept questions by origin, in all, and Think tokens per kept question."""
    by_origin, every = {}, set()
    for p in passes:
        for origin, qs in p["kept_questions"].items():
            by_origin[origin] = by_origin.get(origin, 0) + len(qs)
            every |= set(qs)
    tokens = sum(p["tokens"] for p in passes)
    return {"kept_questions_by_origin": by_origin, "kept_questions": len(every), "think_tokens": tokens,
            "tokens_per_kept_question": tokens / len(every) if every else None}


DIFFICULTY = ("hard", "medium", "easy")


def difficulty_rows(rounds):
    """Per round, pass@1 over the test questions of each bucket of the first round's per-question pass rate."""
    base = rounds[0]["questions"]
    bucket = {q: "hard" if c["answer"] == 0 else "easy" if c["answer"] == c["samples"] else "medium"
              for q, c in base.items()}
    rows = []
    for r in rounds:
        row = {"round": r["label"]}
        for b in DIFFICULTY:
            qs = [q for q, name in bucket.items() if name == b and q in r["questions"]]
            rates = [r["questions"][q]["answer"] / r["questions"][q]["samples"] for q in qs]
            row[b] = {"questions": len(qs), "pass@1": sum(rates) / len(rates) if rates else None}
        rows.append(row)
    return rows


def load_round(eval_dir, label):
    """Everything the report uses about one round, read from its Eval folder and the stage folders beside it."""
    if not os.path.isdir(eval_dir):
        raise DataError(f"{eval_dir}: eval folder not found")
    for name in (SCORED_FILE, SUMMARY_FILE):
        if not os.path.isfile(os.path.join(eval_dir, name)):
            raise DataError(f"{eval_dir}: no {name} (score the folder with evmath.py first)")
    summary = read_json(os.path.join(eval_dir, SUMMARY_FILE))
    if not isinstance(summary, dict):
        raise DataError(f"{eval_dir}/{SUMMARY_FILE}: expected a JSON object")
    folders = _stage_folders(eval_dir)
    think_summary_path = os.path.join(folders[THINK], SUMMARY_FILE)
    think = read_json(think_summary_path) if os.path.isfile(think_summary_path) else {}
    kept = think.get("num_kept")
    if kept is None:
        kept = _count(os.path.join(folders[THINK], KEPT_FILE))
    return {
        "label": label,
        "eval_dir": eval_dir,
        "summary": summary,
        "questions": per_question(_read_scored(os.path.join(eval_dir, SCORED_FILE))),
        "stages": _stage_records(folders),
        "kept_traces": kept,
        "think_pass@1": think.get("pass@1"),
        "train_records": _count(os.path.join(folders[DATA], TRAIN_FILE)),
        "eval_records": _count(os.path.join(folders[DATA], EVAL_FILE)),
        "mean_chars": _mean_chars(eval_dir, summary.get("num_samples")),
        "think_passes": read_think_passes(os.path.dirname(folders[EVAL])),
    }


def default_labels(eval_dirs):
    """round0, round1 ... from a loop's OUT/round{r}/eval layout, else the folder names; r0, r1 ... if they clash."""
    labels = []
    for d in eval_dirs:
        path = os.path.abspath(d)
        labels.append(os.path.basename(os.path.dirname(path)) if os.path.basename(path) == EVAL else os.path.basename(path))
    return labels if len(set(labels)) == len(labels) else [f"r{i}" for i in range(len(eval_dirs))]


# ---------------------------------------------------------------- statistics

def mcnemar_exact(gained, lost):
    """Two-sided exact McNemar p-value from the discordant counts (binomial test of gained vs lost at 1/2)."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def paired_bootstrap(diffs, num_resamples=10000, seed=0, level=CONFIDENCE_LEVEL):
    """(mean, lo, hi): the mean per-question difference and its percentile bootstrap interval over questions."""
    import numpy as np

    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        raise ValueError("paired_bootstrap needs at least one question")
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, num_resamples, 1000):  # chunks keep memory small on 1,319 questions
        idx = rng.integers(0, d.size, size=(min(1000, num_resamples - start), d.size))
        means.append(d[idx].mean(axis=1))
    lo, hi = np.percentile(np.concatenate(means), [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)


def detectable_change(diffs, level=CONFIDENCE_LEVEL, power=POWER):
    """The smallest mean paired difference a two-sided test at `level` detects with probability `power` on this
    many questions, taking sd(d) from the differences observed: (z_(1+level)/2 + z_power) * sd / sqrt(n).
    None when fewer than two questions, or when no question changed at all (sd 0 says nothing about the noise)."""
    from statistics import NormalDist, stdev

    if len(diffs) < 2 or not any(diffs):
        return None
    z = NormalDist().inv_cdf((1 + level) / 2) + NormalDist().inv_cdf(power)
    return z * stdev(diffs) / math.sqrt(len(diffs))


def compare_rounds(prev, cur, num_resamples=10000, seed=0):
    """The paired comparison of round cur against round prev over the questions both scored."""
    common = [q for q in prev["questions"] if q in cur["questions"]]
    if not common:
        raise DataError(f"{cur['eval_dir']}: shares no test question with {prev['eval_dir']}; rounds must use one test set")
    out = {"prev": prev["label"], "cur": cur["label"], "num_questions": len(common)}
    for metric in METRICS:
        diffs = [cur["questions"][q][metric] / cur["questions"][q]["samples"]
                 - prev["questions"][q][metric] / prev["questions"][q]["samples"] for q in common]
        mean, lo, hi = paired_bootstrap(diffs, num_resamples, seed)
        out[metric] = {"diff": mean, "ci95": [lo, hi], "significant": lo > 0 or hi < 0,
                       "detectable80": detectable_change(diffs)}
    solved_before = {q: prev["questions"][q]["answer"] > 0 for q in common}
    solved_now = {q: cur["questions"][q]["answer"] > 0 for q in common}
    out["gained"] = [q for q in common if solved_now[q] and not solved_before[q]]
    out["lost"] = [q for q in common if solved_before[q] and not solved_now[q]]
    out["mcnemar_p"] = mcnemar_exact(len(out["gained"]), len(out["lost"]))
    out["verdict"] = verdict(out)
    return out


def verdict(comp):
    """One line: learned to answer / learned the format only / got worse / no significant change, with the numbers."""
    a, s, f = comp["answer"], comp["strict"], comp["format"]
    up = {m: comp[m]["significant"] and comp[m]["diff"] > 0 for m in METRICS}
    down = {m: comp[m]["significant"] and comp[m]["diff"] < 0 for m in METRICS}
    if up["answer"]:
        head = "learned to answer" + (" and the format" if up["strict"] or up["format"] else "")
    elif down["answer"]:
        head = "got worse at answering"
    elif up["strict"] or up["format"]:
        head = "learned the format, not to answer (answer pass@1 not significantly up)"
    elif down["strict"] or down["format"]:
        head = "no significant change in answers; the format got worse"
    else:
        head = "no significant change"

    def pts(m):
        lo, hi = m["ci95"]
        return f"{100 * m['diff']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}] (detects ±{_mde(m)})"

    if head == "no significant change" and a["detectable80"] is not None:
        head += f" (none larger than ±{_mde(a)} pts in answer pass@1, at 80% power)"

    return (f"{comp['cur']} vs {comp['prev']}: {head}: answer pass@1 {pts(a)}, strict pass@1 {pts(s)}, "
            f"format rate {pts(f)}; McNemar gained {len(comp['gained'])} lost {len(comp['lost'])} "
            f"p={comp['mcnemar_p']:.3g} ({comp['num_questions']} questions)")


def _mde(m):
    """The detectable change in points, or '–' where it cannot be estimated (no question changed)."""
    return "–" if m["detectable80"] is None else f"{100 * m['detectable80']:.1f}"


# ---------------------------------------------------------------- writing

def ledger_rows(rounds):
    """Per test question, solved samples and samples in each round (None where a round lacks the question)."""
    qnums = list(dict.fromkeys(q for r in rounds for q in r["questions"]))
    rows = []
    for q in qnums:
        row = {"qnum": q}
        for r in rounds:
            counts = r["questions"].get(q)
            row[f"{r['label']}_solved"] = counts["answer"] if counts else None
            row[f"{r['label']}_samples"] = counts["samples"] if counts else None
        rows.append(row)
    return rows


def ledger_csv(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"


def _pct_ci(x, ci):
    if x is None:
        return "–"
    return _pct(x) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _num(x, fmt="{:.1f}"):
    return "–" if x is None else fmt.format(x)


def round_row(r):
    """The per-round figures of the report's main table (scorer's numbers, stage folders' counts)."""
    s = r["summary"]
    n = s.get("num_samples")
    return {
        "round": r["label"], "questions": s.get("num_questions"), "samples": n,
        "pass@1": s.get("pass@1"), "pass@1_ci95": s.get("pass@1_ci95"),
        "strict_pass@1": s.get("strict_pass@1"), "strict_pass@1_ci95": s.get("strict_pass@1_ci95"),
        "format_rate": s.get("format_rate"), "no_answer_rate": s.get("no_answer_rate"),
        "pass@N": s.get(f"pass@{n}"), "maj@N": s.get(f"maj@{n}"),
        "truncation_rate": s.get("truncation_rate"), "mean_num_tokens": s.get("mean_num_tokens"),
        "mean_chars": r["mean_chars"], "kept_traces": r["kept_traces"], "think_pass@1": r["think_pass@1"],
        "train_records": r["train_records"], "eval_records": r["eval_records"],
    } | think_totals(r["think_passes"])


def format_round(row):
    """The one-line summary of a round that report.py prints."""
    return (f"{row['round']}: answer pass@1 {_pct_ci(row['pass@1'], row['pass@1_ci95'])} | strict pass@1 "
            f"{_pct_ci(row['strict_pass@1'], row['strict_pass@1_ci95'])} | format {_pct(row['format_rate'])} | "
            f"pass@N {_pct(row['pass@N'])} | {row['eval_dir']}")


def render_think_passes(rounds):
    """The report's Think-passes section (rounds without a think/ folder, like the base model, are left out)."""
    out = ["## Think passes (training questions kept)", "",
           "| round | pass | questions × samples | tokens | kept traces | questions kept (by origin) | "
           "hinted traces dropped (lean on the hint) |", "|---" * 7 + "|"]
    for r in rounds:
        for p in r["think_passes"]:
            kept = ", ".join(f"{o} {len(qs)}" for o, qs in p["kept_questions"].items()) or "0"
            out.append(f"| {r['label']} | {p['pass']} | {p['questions']} × {p['samples']} | {p['tokens']} | "
                       f"{p['kept_traces']} | {kept} | {_num(p['hint_leaks'], '{}')} |")
        if r["think_passes"]:
            t = think_totals(r["think_passes"])
            out.append(f"| {r['label']} | **all** | | {t['think_tokens']} | | **{t['kept_questions']}** distinct | "
                       f"{_num(t['tokens_per_kept_question'], '{:.0f}')} tokens per kept question |")
    return out + [""]


def render_difficulty(rows):
    """The report's pass@1-by-difficulty section."""
    first = rows[0]
    out = ["## Test pass@1 by difficulty", "",
           "| round | " + " | ".join(f"{b} ({first[b]['questions']} questions)" for b in DIFFICULTY) + " |",
           "|---" * (len(DIFFICULTY) + 1) + "|"]
    out += [f"| {row['round']} | " + " | ".join(_pct(row[b]["pass@1"]) for b in DIFFICULTY) + " |" for row in rows]
    return out + ["", f"Buckets: {first['round']}'s per-question answer pass rate (hard: no sample right, "
                      "easy: every sample right, medium: between).", ""]


def render_markdown(rounds, comparisons, figures, ledger_name):
    rows = [round_row(r) for r in rounds]
    out = ["# TPT report", ""]
    for r in rounds:
        out.append(f"- **{r['label']}**: `{r['eval_dir']}`")
    out += ["", "## Verdict", ""]
    out += [f"- {c['verdict']}" for c in comparisons] or ["- one round only: nothing to compare"]
    out += ["", "## Per round (test set)", "",
            "| round | questions × samples | answer pass@1 [95% CI] | strict pass@1 [95% CI] | format rate | pass@N | "
            "maj@N | no answer | truncated | mean tokens | mean chars | kept traces | train / eval records | "
            "Think pass@1 (train) |",
            "|---" * 14 + "|"]
    for row in rows:
        out.append(
            f"| {row['round']} | {row['questions']} × {row['samples']} | {_pct_ci(row['pass@1'], row['pass@1_ci95'])} | "
            f"{_pct_ci(row['strict_pass@1'], row['strict_pass@1_ci95'])} | {_pct(row['format_rate'])} | "
            f"{_pct(row['pass@N'])} | {_pct(row['maj@N'])} | {_pct(row['no_answer_rate'])} | "
            f"{_pct(row['truncation_rate'])} | {_num(row['mean_num_tokens'])} | {_num(row['mean_chars'], '{:.0f}')} | "
            f"{_num(row['kept_traces'], '{}')} | {_num(row['train_records'], '{}')} / {_num(row['eval_records'], '{}')} | "
            f"{_pct(row['think_pass@1'])} |")
    out += ["", "N = samples per question of that round's Eval. Kept traces, records and Think pass@1 come from the "
            "round's think/ and data/ folders (– for the base model or where absent).", "",
            "## Stages (speed and wall time)", "", "| round | stage | manifest | script | tokens/s | wall s | train loss |",
            "|---|---|---|---|---|---|---|"]
    for r in rounds:
        for st in r["stages"]:
            out.append(f"| {r['label']} | {st['stage']} | {st['file']} | {st['script'] or '–'} | "
                       f"{_num(st['tokens_per_second'])} | {_num(st['wall_seconds'])} | {_num(st['train_loss'], '{:.4f}')} |")
    if not any(r["stages"] for r in rounds):
        out.append("| – | no stage manifests found beside these eval folders | | | | | |")
    out += [""] + render_think_passes(rounds) + render_difficulty(difficulty_rows(rounds))
    out += ["## Paired tests (each round against the one before)", "",
            "| rounds | questions | Δ answer pass@1 [95% CI] | Δ strict pass@1 [95% CI] | Δ format rate [95% CI] | "
            "gained | lost | McNemar p |", "|---" * 8 + "|"]
    for c in comparisons:
        cells = [f"{100 * c[m]['diff']:+.1f} pts [{100 * c[m]['ci95'][0]:+.1f}, {100 * c[m]['ci95'][1]:+.1f}]"
                 + (" *" if c[m]["significant"] else "") + f" (detects ±{_mde(c[m])})" for m in METRICS]
        out.append(f"| {c['cur']} vs {c['prev']} | {c['num_questions']} | {' | '.join(cells)} | {len(c['gained'])} | "
                   f"{len(c['lost'])} | {c['mcnemar_p']:.3g} |")
    out += ["", "`*`: the 95% paired-bootstrap interval excludes 0. Detects ±X: the smallest change this many "
            "questions detects with 80% power (– where no question changed). Gained / lost: questions no sample solved before and "
            "at least one sample solves now / the reverse; McNemar (exact, two-sided) tests gained against lost.", "",
            "## Per-question ledger", "",
            f"`{ledger_name}`: one row per test question, solved samples and samples in each round.", ""]
    for r in rounds:
        qs = r["questions"].values()
        solved = sum(q["answer"] > 0 for q in qs)
        out.append(f"- {r['label']}: {solved} of {len(qs)} questions solved by at least one sample, "
                   f"{sum(q['answer'] == q['samples'] for q in qs)} by every sample")
    for c in comparisons:
        out.append(f"- {c['cur']} vs {c['prev']}: gained {_qlist(c['gained'])}; lost {_qlist(c['lost'])}")
    out += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    out += ["", "## How to read this", "",
            "Answer pass@1 scores the final answer however it was written; strict pass@1 only `#### N` lines, as the "
            "prompt asks. A round **learned to answer** when answer pass@1 rises with a 95% paired-bootstrap interval "
            "above 0; it **learned the format** when strict pass@1 or the format rate rises significantly while answer "
            "pass@1 does not. Otherwise the change is within the noise of this many questions: **no significant change**. "
            "\"detects ±X\" is the smallest true change this many questions would show as significant four times in "
            "five (paired, 80% power, 5% level, from the spread of the per-question differences): a round that "
            "changed pass@1 by more than X would most likely not read \"no significant change\".",
            ""]
    return "\n".join(out)


def _qlist(qs, limit=20):
    if not qs:
        return "none"
    shown = ", ".join(str(q) for q in qs[:limit])
    return f"{len(qs)} ({shown}{', …' if len(qs) > limit else ''})"


def _save_figure(fig, path):
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")


def plot_pass_at_1(rounds, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [round_row(r) for r in rounds]
    x = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(rows) + 2), 3.6))
    for key, name, offset in (("pass@1", "answer pass@1", -0.06), ("strict_pass@1", "strict pass@1", 0.06)):
        ys = [100 * (r[key] or 0) for r in rows]
        cis = [r.get(key + "_ci95") for r in rows]
        err = [[y - 100 * c[0] if c else 0 for y, c in zip(ys, cis)], [100 * c[1] - y if c else 0 for y, c in zip(ys, cis)]]
        ax.errorbar([i + offset for i in x], ys, yerr=err, marker="o", capsize=4, label=name + " (95% CI)")
    ax.plot(x, [100 * (r["format_rate"] or 0) for r in rows], ":", color="gray", marker=".", label="format rate")
    ax.set_xticks(x, [r["round"] for r in rows])
    ax.set_ylabel("% of test samples")
    ax.set_title("pass@1 per round")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save_figure(fig, path)
    plt.close(fig)


def plot_changes(rounds, comparisons, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_label = {r["label"]: r for r in rounds}
    fig, axes = plt.subplots(len(comparisons), 1, figsize=(7, 2.6 * len(comparisons)), squeeze=False)
    for ax, c in zip(axes[:, 0], comparisons):
        prev, cur = by_label[c["prev"]]["questions"], by_label[c["cur"]]["questions"]
        diffs = sorted(100 * (cur[q]["answer"] / cur[q]["samples"] - prev[q]["answer"] / prev[q]["samples"])
                       for q in prev if q in cur)
        colors = ["tab:green" if d > 0 else "tab:red" if d < 0 else "lightgray" for d in diffs]
        ax.bar(range(len(diffs)), diffs, width=1.0, color=colors)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel("Δ pass@1 (pts)")
        ax.set_title(f"{c['cur']} vs {c['prev']}: per-question change (sorted); gained {len(c['gained'])}, "
                     f"lost {len(c['lost'])}, McNemar p={c['mcnemar_p']:.3g}", fontsize=9)
    axes[-1, 0].set_xlabel("test questions")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def build_report(eval_dirs, out_dir, labels=None, num_resamples=10000, seed=0):
    """Read every round, compare neighbours, write report.md, report.json, ledger.csv and the PNGs to out_dir.

    Returns (path of report.md, the report dict). Everything is read and checked before anything is written.
    """
    labels = list(labels) if labels else default_labels(eval_dirs)
    if len(labels) != len(eval_dirs):
        raise DataError(f"--labels has {len(labels)} names for {len(eval_dirs)} rounds")
    if len(set(labels)) != len(labels):
        raise DataError(f"--labels must be distinct, got {labels}")
    rounds = [load_round(d, label) for d, label in zip(eval_dirs, labels)]
    comparisons = [compare_rounds(a, b, num_resamples, seed) for a, b in zip(rounds, rounds[1:])]
    os.makedirs(out_dir, exist_ok=True)
    figures = {"pass_at_1.png": os.path.join(out_dir, "pass_at_1.png")}
    plot_pass_at_1(rounds, figures["pass_at_1.png"])
    if comparisons:
        figures["per_question_changes.png"] = os.path.join(out_dir, "per_question_changes.png")
        plot_changes(rounds, comparisons, figures["per_question_changes.png"])
    elif os.path.isfile(os.path.join(out_dir, "per_question_changes.png")):
        os.remove(os.path.join(out_dir, "per_question_changes.png"))  # a stale figure from an earlier, longer report
    rows = ledger_rows(rounds)
    write_text(os.path.join(out_dir, "ledger.csv"), ledger_csv(rows))
    report = {"rounds": [round_row(r) | {"eval_dir": r["eval_dir"], "stages": r["stages"]} for r in rounds],
              "think_passes": {r["label"]: r["think_passes"] for r in rounds}, "difficulty": difficulty_rows(rounds),
              "comparisons": comparisons, "bootstrap": {"resamples": num_resamples, "seed": seed, "level": CONFIDENCE_LEVEL},
              "figures": figures, "ledger": os.path.join(out_dir, "ledger.csv")}
    write_json(os.path.join(out_dir, "report.json"), report)
    md_path = os.path.join(out_dir, "report.md")
    write_text(md_path, render_markdown(rounds, comparisons, list(figures), "ledger.csv"))
    return md_path, report


def log_to_wandb(report, project, run_name=None, out_dir=None):
    """The same figures and per-round figures to W&B (WANDB_MODE=offline works); returns the run's folder."""
    import wandb

    run = wandb.init(project=project, name=run_name, job_type="report", dir=out_dir,
                     config={"rounds": [r["eval_dir"] for r in report["rounds"]]})
    keys = ("pass@1", "strict_pass@1", "format_rate", "pass@N", "maj@N", "truncation_rate", "mean_num_tokens")
    for i, r in enumerate(report["rounds"]):
        run.log({f"eval/{k}": r[k] for k in keys if r.get(k) is not None} | {"round": i}, step=i)
    columns = ["round"] + list(keys)
    run.log({"report/rounds": wandb.Table(columns=columns, data=[[r["round"]] + [r.get(k) for k in keys]
                                                                 for r in report["rounds"]]),
             **{f"report/{os.path.splitext(n)[0]}": wandb.Image(p) for n, p in report["figures"].items()}})
    folder = run.dir
    run.finish()
    return folder
