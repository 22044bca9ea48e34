"""evmath.py end to end on a small fixture cut from the real gemma-2-2b-it outputs (12 questions x 3
samples), plus the reproduction of the original scorer's published figures on all 5,000 outputs.
Runtime budget: < 15 s.
"""
import csv
import json
import re
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT, TPT_REF
from tpt.extract import extract_answer, is_correct
from tpt.io import normalize_text, read_json, read_questions
from tpt.metrics import mean_pass_at_k
from tpt.scoring import score_samples_dir

GEMMA = TPT_REF / "gemma2b_test500"
NUM_QUESTIONS, NUM_SAMPLES = 12, 3


@pytest.fixture
def fixture_run(tmp_path, shared_data):
    """answers.json (12 test500 questions) and run/e0..e2.json (their real gemma samples)."""
    questions = read_json(TPT_REF / "test500.json")[:NUM_QUESTIONS]
    idts = {q["idt"] for q in questions}
    (tmp_path / "run").mkdir()
    (tmp_path / "answers.json").write_text(json.dumps(questions))
    for i in range(NUM_SAMPLES):
        records = [r for r in read_json(GEMMA / f"e{i}.json") if r["qnum"] in idts]
        (tmp_path / "run" / f"e{i}.json").write_text(json.dumps(records))
    return tmp_path


def evmath(*args):
    result = subprocess.run([PYTHON, str(ROOT / "evmath.py"), *map(str, args)], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_evmath_end_to_end(fixture_run):
    run, answers = fixture_run / "run", fixture_run / "answers.json"
    (run / "manifest.json").write_text('{"script": "gen_synth.py"}')  # the sampler's manifest stays
    result = evmath("--samples_dir", run, "--answer_path", answers, "--num_samples", NUM_SAMPLES, "--k", 2)
    questions = read_questions(str(answers))
    gold = {q["idt"]: q["solnum"] for q in questions}

    scored = read_json(run / "scored.json")
    assert len(scored) == NUM_QUESTIONS * NUM_SAMPLES
    # Every verdict is the extractor's verdict on the sample it names.
    for row in scored:
        text = next(r for r in read_json(run / f"e{row['sample']}.json") if r["qnum"] == row["qnum"])["solution"]
        assert row["final_answer"] == extract_answer(text)
        assert row["correct"] == is_correct(row["final_answer"], gold[row["qnum"]])
        assert row["strict_correct"] == is_correct(extract_answer(text, "strict"), gold[row["qnum"]])

    summary = read_json(run / "pass_at_k_results.json")
    counts = [sum(r["correct"] for r in scored if r["qnum"] == q["idt"]) for q in questions]
    assert summary["num_questions"] == NUM_QUESTIONS and summary["num_samples"] == NUM_SAMPLES
    for k in (1, 2, 3):
        assert summary[f"pass@{k}"] == pytest.approx(mean_pass_at_k(counts, NUM_SAMPLES, k))
    assert {"maj@1", "maj@2", "maj@3", "strict_pass@1", "strict_pass@3", "format_rate", "no_answer_rate",
            "pass@1_ci95", "strict_pass@1_ci95", "num_correct", "num_kept", "truncation_rate",
            "mean_num_tokens"} <= set(summary)
    assert summary["num_correct"] == sum(counts)
    assert summary["truncation_rate"] is None and summary["mean_num_tokens"] is None  # the samples lack them
    lo, hi = summary["pass@1_ci95"]
    assert lo <= summary["pass@1"] <= hi
    assert summary["num_correct"] + summary["num_wrong_answer"] + summary["num_no_answer"] == len(scored)

    # The original's CSV: header Metric,Score, then pass@1 and pass@N first.
    rows = list(csv.reader(open(run / "pass_at_k_results.csv")))
    assert rows[0] == ["Metric", "Score"] and rows[1][0] == "pass@1" and rows[2][0] == f"pass@{NUM_SAMPLES}"
    assert float(rows[1][1]) == pytest.approx(summary["pass@1"])

    # Kept traces: one per solved question (the default), a correct one, in the question format.
    kept = read_questions(str(run / "correct_answers.json"))
    assert len(kept) == sum(c > 0 for c in counts) == summary["num_kept"]
    for rec in kept:
        assert is_correct(extract_answer(rec["solution"]), rec["solnum"])
        assert rec["solnum"] == gold[rec["idt"]]

    assert json.loads((run / "manifest.json").read_text()) == {"script": "gen_synth.py"}
    assert read_json(run / "evmath_manifest.json")["script"] == "evmath.py"
    assert f"pass@1 {summary['pass@1']:.4f}" in result.stdout and f"kept {len(kept)}" in result.stdout


def test_evmath_scores_each_subfolder_of_a_root(fixture_run):
    # The original's tpt_workflow.sh passes a root whose subfolders each hold one model's samples.
    root = fixture_run / "root"
    for name in ("model_a", "model_b"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            (root / name / f"e{i}.json").write_text((fixture_run / "run" / f"e{i}.json").read_text())
    result = evmath("--samples_dir", root, "--answer_path", fixture_run / "answers.json", "--num_samples", 2)
    for name in ("model_a", "model_b"):
        assert (root / name / "pass_at_k_results.json").is_file()
        assert str(root / name) in result.stdout


def test_pruning_knobs(fixture_run):
    run = fixture_run / "run"
    questions = read_questions(str(fixture_run / "answers.json"))
    e0 = read_json(run / "e0.json")
    # e3: e0 again with its whitespace changed (duplicates); e4: e0 cut by the token limit.
    (run / "e3.json").write_text(json.dumps([dict(r, solution="  " + r["solution"].replace("\n", "\n\n"))
                                             for r in e0]))
    (run / "e4.json").write_text(json.dumps([dict(r, finish_reason="length", num_tokens=512) for r in e0]))
    every = score_samples_dir(str(run), questions, 5, max_per_question=0)
    kept = read_json(run / "correct_answers.json")
    keys = [(r["idt"], normalize_text(r["solution"])) for r in kept]
    assert len(keys) == len(set(keys))  # no duplicate after whitespace folding
    solved_by_e0 = [r for r in e0 if is_correct(extract_answer(r["solution"]), next(
        q["solnum"] for q in questions if q["idt"] == r["qnum"]))]
    assert solved_by_e0, "the fixture needs some correct e0 samples"
    assert every["truncation_rate"] == 1.0  # the rate is over the samples that report a finish_reason
    assert every["mean_num_tokens"] == pytest.approx(512)
    scored = read_json(run / "scored.json")
    assert all(r["finish_reason"] == "length" for r in scored if r["sample"] == 4)
    assert every["num_kept"] == sum(r["correct"] for r in scored if r["sample"] in (0, 1, 2))

    with_truncated = score_samples_dir(str(run), questions, 5, max_per_question=0, keep_truncated=True)
    assert with_truncated["num_kept"] == every["num_kept"]  # e4 repeats e0, so dedup still drops it

    one = score_samples_dir(str(run), questions, 5, max_per_question=1)
    solved_untruncated = {r["qnum"] for r in scored if r["correct"] and r["sample"] != 4}
    assert one["num_kept"] == len(solved_untruncated)
    assert [r["idt"] for r in read_json(run / "correct_answers.json")] == [
        q["idt"] for q in questions if q["idt"] in solved_untruncated]

    strict = score_samples_dir(str(run), questions, 5, max_per_question=0, strict_only=True)
    kept = read_json(run / "correct_answers.json")
    assert len(kept) == strict["num_kept"] <= every["num_kept"]
    assert all(is_correct(extract_answer(r["solution"], "strict"), r["solnum"]) for r in kept)


def test_kept_trace_file_with_id_works_as_answer_path(fixture_run):
    # The original's kept-trace files name the question `id`; they serve as answer files too.
    questions = read_json(fixture_run / "answers.json")
    renamed = [{"id": q["idt"], "question": q["question"], "solution": q["solution"], "solnum": q["solnum"]}
               for q in questions]
    (fixture_run / "kept_style.json").write_text(json.dumps(renamed))
    evmath("--samples_dir", fixture_run / "run", "--answer_path", fixture_run / "kept_style.json",
           "--num_samples", NUM_SAMPLES)
    assert read_json(fixture_run / "run" / "pass_at_k_results.json")["num_questions"] == NUM_QUESTIONS


def test_reference_mode_reproduces_the_original_scorer(shared_data):
    # The original evmath.py published pass@1 / pass@10 for these 5,000 outputs in pass_at_k_results.csv;
    # the tpt_original reference mode must give the same figures, or we misread its rule.
    published = {row[0]: float(row[1]) for row in csv.reader(open(GEMMA / "pass_at_k_results.csv")) if
                 row and row[0].startswith("pass@")}
    gold = {q["idt"]: q["solnum"] for q in read_questions(str(TPT_REF / "test500.json"))}
    counts = dict.fromkeys(gold, 0)
    for i in range(10):
        for r in read_json(GEMMA / f"e{i}.json"):
            counts[r["qnum"]] += is_correct(extract_answer(r["solution"], "tpt_original"), gold[r["qnum"]],
                                            "tpt_original")
    assert mean_pass_at_k(list(counts.values()), 10, 1) == pytest.approx(published["pass@1"], abs=1e-9)
    assert mean_pass_at_k(list(counts.values()), 10, 10) == pytest.approx(published["pass@10"], abs=1e-9)


def test_manifest_versions_match_importlib_metadata(fixture_run):
    # evmath_manifest.json reads versions from the dist-info folder names (fast); they must be the same
    # versions importlib.metadata reports.
    import importlib.metadata
    evmath("--samples_dir", fixture_run / "run", "--answer_path", fixture_run / "answers.json", "--num_samples", 1)
    versions = read_json(fixture_run / "run" / "evmath_manifest.json")["versions"]
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "vllm", "wandb"):
        try:
            want = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            want = None
        assert versions[name] == want, name


def _rewrite_first_solution(path):
    records = read_json(path)
    records[0]["solution"] = "I do not know."
    path.write_text(json.dumps(records))


@pytest.mark.parametrize("flags, change, named", [
    ([], None, None),  # the same files and settings: one skip line, nothing rewritten
    (["--max_per_question", "0"], None, "max_per_question: 1 -> 0"),  # a changed setting: scored again, named
    ([], _rewrite_first_solution, "samples_sha256"),  # a sample file's content changed: scored again
])
def test_run_again_skips_the_same_and_redoes_a_change(fixture_run, flags, change, named):
    run = fixture_run / "run"
    first = ["--samples_dir", run, "--answer_path", fixture_run / "answers.json", "--num_samples", NUM_SAMPLES]
    evmath(*first)
    outputs = [p.name for p in run.iterdir() if not re.fullmatch(r"e\d+\.json", p.name)]
    assert "evmath_manifest.json" in outputs and "correct_answers.json" in outputs
    stamps = {name: (run / name).stat().st_mtime_ns for name in outputs}
    if change:
        change(run / "e1.json")
    again = evmath(*first, *flags)
    if named is None:
        assert again.stdout == f"skip: {run}: scoring finished, same settings, inputs and code; nothing to do\n"
        assert {name: (run / name).stat().st_mtime_ns for name in outputs} == stamps
    else:
        assert again.stdout.startswith(f"redo: {run}: ") and named in again.stdout.splitlines()[0]
        assert all((run / name).stat().st_mtime_ns != stamp for name, stamp in stamps.items())
        manifest = read_json(run / "evmath_manifest.json")
        assert manifest["summary"]["max_per_question"] == (0 if flags else 1)
        # and now it is the finished run
        assert evmath(*first, *flags).stdout == f"skip: {run}: scoring finished, same settings, inputs and code; nothing to do\n"


# A scorer that reads no answer from any reply: how answers are read changed, the files did not.
BLIND_SCORER = """

def extract_pair(text):
    return None, None
"""


def test_a_scorer_change_scores_again(fixture_run, tmp_path):
    # A copy of the project whose tpt/extract.py reads answers otherwise: the folder it scored before is scored
    # again (one redo line naming the code), not skipped with the old scores.
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "tpt", tree / "tpt", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "evmath.py", tree / "evmath.py")
    run = fixture_run / "run"
    args = [PYTHON, str(tree / "evmath.py"), "--samples_dir", str(run), "--answer_path",
            str(fixture_run / "answers.json"), "--num_samples", str(NUM_SAMPLES)]
    first = subprocess.run(args, capture_output=True, text=True, cwd=tree, timeout=120)
    assert first.returncode == 0, first.stderr
    before = read_json(run / "pass_at_k_results.json")["pass@1"]
    assert before > 0
    with open(tree / "tpt" / "extract.py", "a") as f:
        f.write(BLIND_SCORER)
    again = subprocess.run(args, capture_output=True, text=True, cwd=tree, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"redo: {run}: evmath_manifest.json was made with other settings, inputs or code "
                                   "(code_sha256: ")
    assert read_json(run / "pass_at_k_results.json")["pass@1"] == 0  # the new scorer's verdicts
    assert read_json(run / "evmath_manifest.json")["summary"]["pass@1"] == 0


def test_a_think_pass_that_sampled_nothing_is_skipped(tmp_path):
    # gen_synth.py --skip_solved when every question has a kept trace: a manifest, no sample file.
    run = tmp_path / "think_resample"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"script": "gen_synth.py", "num_questions": 0}))
    result = evmath("--samples_dir", run, "--answer_path", tmp_path / "nowhere.json", "--num_samples", 2)
    assert result.stdout == f"skip: {run}: sampled nothing (every question has a kept trace)\n"
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json"]
