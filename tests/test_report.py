"""report.py and tpt.report on real round folders it did not write: gemma-2-2b-it's 10 samples per test500 question
(../shared/data/tpt_reference/gemma2b_test500) split into two "rounds" (e0..e4 and e5..e9), scored by the project's
scorer; the ledger and the paired tests are checked against counts taken straight from scored.json.
Budget: ~40 s on 2 cores (two report.py subprocesses, one with W&B offline)."""
import csv
import glob
import json
import math
import os
import shutil
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT, TPT_REF
from tpt.io import read_json, read_questions, write_json
from tpt.report import build_report, detectable_change, mcnemar_exact, paired_bootstrap
from tpt.scoring import score_samples_dir


def make_round(folder, sample_files, edit=None):
    """An Eval folder holding the given reference sample files as e0..e{n-1}, scored by tpt.scoring."""
    os.makedirs(folder)
    for i, src in enumerate(sample_files):
        records = read_json(src)
        if edit:
            records = edit(records)
        write_json(os.path.join(folder, f"e{i}.json"), records)
    score_samples_dir(folder, read_questions(TPT_REF / "test500.json"), len(sample_files))
    return str(folder)


def no_marker(records):
    # the same answers said without the `####` marker: only the format changes
    return [r | {"solution": r["solution"].replace("####", "The answer is")} for r in records]


def shifted(records):
    # every question gets the previous question's solution: the format stays, the answers go wrong
    return [r | {"solution": records[i - 1]["solution"]} for i, r in enumerate(records)]


@pytest.fixture(scope="module")
def rounds(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    ref = [TPT_REF / "gemma2b_test500" / f"e{i}.json" for i in range(10)]
    a = make_round(root / "round0" / "eval", ref[:5])
    b = make_round(root / "round1" / "eval", ref[5:])
    # the stage folders a loop writes beside eval/: a model manifest and the split's train file
    write_json(str(root / "round1" / "model" / "manifest.json"),
               {"script": "sft_math.py", "wall_seconds": 12.5, "tokens_per_second": 61.0, "train_loss": 0.75})
    write_json(str(root / "round1" / "data" / "train.json"), read_json(TPT_REF / "ev.json")[:7])
    other = tmp_path_factory.mktemp("variants")
    return {"a": a, "b": b, "no_marker": make_round(other / "no_marker", ref[:5], no_marker),
            "shifted": make_round(other / "shifted", ref[:5], shifted)}


def solved_counts(eval_dir):
    """{qnum: correct samples} counted directly from scored.json."""
    counts = {}
    for row in json.load(open(os.path.join(eval_dir, "scored.json"))):
        counts[row["qnum"]] = counts.get(row["qnum"], 0) + (row["correct"] is True)
    return counts


@pytest.mark.parametrize("gained, lost, expected", [
    (0, 0, 1.0),                 # no discordant question: nothing to test
    (5, 0, 2 / 32),              # all five one way: 2 * (1/2)^5
    (0, 5, 2 / 32),              # symmetric
    (10, 2, 2 * (1 + 12 + 66) / 4096),  # 2 * P[Bin(12, 1/2) <= 2]
    (3, 3, 1.0),                 # balanced: the doubled tail passes 1 and is capped
])
def test_mcnemar_exact(gained, lost, expected):
    assert mcnemar_exact(gained, lost) == pytest.approx(expected)


def test_paired_bootstrap():
    diffs = [0.2, -0.2, 0.4, 0.0, 0.6, 0.0, 0.2, -0.4, 0.2, 0.2] * 10
    mean, lo, hi = paired_bootstrap(diffs, 4000, seed=1)
    assert mean == pytest.approx(sum(diffs) / len(diffs))
    assert lo < mean < hi
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    assert (hi - lo) == pytest.approx(2 * 1.96 * sd / math.sqrt(len(diffs)), rel=0.15)  # ~ the normal interval
    assert paired_bootstrap(diffs, 4000, seed=1) == (mean, lo, hi)  # seeded
    assert paired_bootstrap([0.0] * 20, 500, seed=0) == (0.0, 0.0, 0.0)  # no change, no width


@pytest.mark.parametrize("diffs, expected", [
    # sd 0.5 over 100 questions: (1.95996 + 0.84162) * 0.5 / 10
    ([0.5, -0.5] * 50, 2.80158 * math.sqrt(25 / 99) / 10),
    # four times the questions, half the detectable change
    ([0.5, -0.5] * 200, 2.80158 * math.sqrt(100 / 399) / 20),
    # one question: no spread to estimate
    ([0.3], None),
    # no question changed: sd 0 says nothing about the noise, so no figure rather than a false 0
    ([0.0] * 50, None),
])
def test_detectable_change(diffs, expected):
    assert detectable_change(diffs) == (None if expected is None else pytest.approx(expected, rel=1e-4))


def test_detectable_change_is_detected_four_times_in_five():
    # Paired rounds whose true change equals the detectable change: the bootstrap verdict calls it significant
    # in about 80% of them (the figure's promise), and a true change of 0 in about 5%.
    import numpy as np

    rng = np.random.default_rng(0)
    questions, samples, trials = 120, 4, 300
    rates = rng.uniform(0.0, 0.4, size=questions)  # questions differ in difficulty, as real ones do
    diffs0 = (rng.binomial(samples, rates, (trials, questions)) - rng.binomial(samples, rates, (trials, questions)))
    mde = float(np.median([detectable_change(list(d / samples)) for d in diffs0[:50]]))
    hits = {0.0: 0, mde: 0}
    for shift in hits:
        for t in range(trials):
            before = rng.binomial(samples, rates) / samples
            after = rng.binomial(samples, np.clip(rates + shift, 0, 1)) / samples
            _, lo, hi = paired_bootstrap(list(after - before), 400, seed=t)
            hits[shift] += lo > 0 or hi < 0
    assert 0.70 <= hits[mde] / trials <= 0.90, (mde, hits)
    assert hits[0.0] / trials <= 0.10, hits


def test_report_script_on_reference_rounds(rounds, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([PYTHON, str(ROOT / "report.py"), "--rounds", rounds["a"], rounds["b"], "--out", str(out),
                           "--bootstrap", "2000"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"report: {out / 'report.md'}"
    for name in ("report.md", "report.json", "ledger.csv", "pass_at_1.png", "per_question_changes.png"):
        assert (out / name).stat().st_size > 0

    # the ledger against scored.json, counted here
    before, after = solved_counts(rounds["a"]), solved_counts(rounds["b"])
    rows = list(csv.DictReader(open(out / "ledger.csv")))
    assert len(rows) == 500
    for row in rows:
        q = int(row["qnum"])
        assert (int(row["round0_solved"]), int(row["round1_solved"])) == (before[q], after[q])
        assert row["round0_samples"] == row["round1_samples"] == "5"

    # gained / lost and McNemar from the discordant questions, binomial tail by hand
    gained = sorted(q for q in before if before[q] == 0 and after[q] > 0)
    lost = sorted(q for q in before if before[q] > 0 and after[q] == 0)
    report = json.load(open(out / "report.json"))
    comp = report["comparisons"][0]
    assert (sorted(comp["gained"]), sorted(comp["lost"])) == (gained, lost)
    n, k = len(gained) + len(lost), min(len(gained), len(lost))
    assert comp["mcnemar_p"] == pytest.approx(min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n))

    # the bootstrap is centred on the pass@1 difference of the scorer's own summaries
    pass1 = [read_json(os.path.join(rounds[r], "pass_at_k_results.json"))["pass@1"] for r in ("a", "b")]
    diff = sum(after[q] - before[q] for q in before) / 5 / len(before)
    assert comp["answer"]["diff"] == pytest.approx(diff) == pytest.approx(pass1[1] - pass1[0])
    lo, hi = comp["answer"]["ci95"]
    assert lo < diff < hi and comp["answer"]["significant"] == (lo > 0 or hi < 0)

    md = (out / "report.md").read_text()
    assert comp["verdict"] in md and f"gained {len(gained)}" in md
    # beside each difference, the change 500 questions could detect, from the per-question differences
    d = [(after[q] - before[q]) / 5 for q in before]
    mde = detectable_change(d)
    sd = math.sqrt(sum((x - diff) ** 2 for x in d) / (len(d) - 1))
    assert comp["answer"]["detectable80"] == pytest.approx(mde) == pytest.approx(2.8016 * sd / math.sqrt(500), rel=1e-4)
    assert f"(detects ±{100 * mde:.1f})" in comp["verdict"]
    assert "| round1 | model | manifest.json | sft_math.py | 61.0 | 12.5 | 0.7500 |" in md  # stage folder read
    assert report["rounds"][1]["train_records"] == 7 and report["rounds"][0]["train_records"] is None


@pytest.mark.parametrize("before, after, head", [
    # same answers, `####` added: the format was learned, not the answers
    ("no_marker", "a", "learned the format, not to answer"),
    # right answers where the solutions were shuffled to wrong questions
    ("shifted", "a", "learned to answer"),
    ("a", "shifted", "got worse at answering"),
    # the very same samples twice
    ("a", "a", "no significant change"),
])
def test_verdicts(rounds, tmp_path, before, after, head):
    _, report = build_report([rounds[before], rounds[after]], str(tmp_path), ["before", "after"], 1000, 0)
    assert report["comparisons"][0]["verdict"].startswith(f"after vs before: {head}")


def test_unscored_folder_fails_cleanly(tmp_path, rounds):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(os.path.join(rounds["a"], "e0.json"), bare / "e0.json")
    out = tmp_path / "report"
    proc = subprocess.run([PYTHON, str(ROOT / "report.py"), "--rounds", rounds["a"], str(bare), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bare}: no scored.json (score the folder with evmath.py first)"
    assert not out.exists()  # nothing half-written


def test_wandb_offline(rounds, tmp_path):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    out = tmp_path / "report"
    proc = subprocess.run([PYTHON, str(ROOT / "report.py"), "--rounds", rounds["a"], rounds["b"], "--out", str(out),
                           "--bootstrap", "500", "--wandb"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    images = glob.glob(str(out / "wandb" / "offline-run-*" / "files" / "media" / "images" / "**" / "*.png"), recursive=True)
    assert len(images) == 2  # the same two figures as report.md
