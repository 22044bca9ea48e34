"""make_json.py: split by question, never by trace, and keep held-out questions out. Real inputs: the
original project's math2b_2k.json + ev.json (2,200 kept traces that share 72 records) and its test500 kept
traces. Runtime budget: < 10 s.
"""
import json
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT, TPT_REF
from tpt.io import normalize_text, read_json, read_questions
from tpt.split import group_by_question, split_by_question


def make_json(*args, check=True):
    result = subprocess.run([PYTHON, str(ROOT / "make_json.py"), *map(str, args)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def leaky_input(tmp_path, shared_data):
    """math2b_2k.json + ev.json as one kept-trace file, plus extra traces: a second trace of some questions
    under the same idt, and the same question text under a new idt (case and spacing changed)."""
    records = read_json(TPT_REF / "math2b_2k.json") + read_json(TPT_REF / "ev.json")
    extra = [dict(r, solution=r["solution"] + "\n(second trace)") for r in records[:30]]
    extra += [dict(r, idt=900000 + i, question="  " + r["question"].upper()) for i, r in enumerate(records[30:40])]
    path = tmp_path / "kept.json"
    path.write_text(json.dumps(records + extra))
    return path, len(records + extra)


def question_keys(records):
    return {r["idt"] for r in records}, {normalize_text(r["question"]) for r in records}


def test_split_by_question_end_to_end(tmp_path, leaky_input):
    kept, total = leaky_input
    train_path, eval_path = tmp_path / "d" / "train.json", tmp_path / "d" / "eval.json"
    result = make_json("--input", kept, "--train_output", train_path, "--eval_output", eval_path,
                       "--train_size", 1500, "--eval_size", 0, "--seed", 3)
    train, evals = read_questions(str(train_path), unique_idt=False), read_questions(str(eval_path), unique_idt=False)
    train_idts, train_texts = question_keys(train)
    eval_idts, eval_texts = question_keys(evals)
    assert not train_idts & eval_idts and not train_texts & eval_texts  # no question on both sides
    assert len(train) <= 1500 and len(train) + len(evals) == total  # eval_size 0: every trace placed
    assert len(train) >= 1500 - 5  # whole questions of 1-3 traces fill train almost exactly
    # Each output record keeps the question format that the original sft_math.py reads.
    for rec in train[:5] + evals[:5]:
        assert {"idt", "question", "solution", "solnum"} <= set(rec)
    manifest = read_json(tmp_path / "d" / "make_json_manifest.json")
    assert manifest["train_traces"] == len(train) and manifest["eval_traces"] == len(evals)
    assert str(train_path) in result.stdout


def test_eval_size_caps_eval_by_whole_questions(tmp_path, leaky_input):
    kept, total = leaky_input
    make_json("--input", kept, "--train_output", tmp_path / "t.json", "--eval_output", tmp_path / "e.json",
              "--train_size", 1000)  # eval_size defaults to the original's 200
    evals = read_json(tmp_path / "e.json")
    assert 190 <= len(evals) <= 200
    groups = group_by_question(read_questions(str(kept), unique_idt=False))
    assert len(groups) < total  # the fixture really has questions with several traces


def test_split_is_seeded():
    records = [{"idt": i // 2, "question": f"q{i // 2}", "solution": f"s{i}", "solnum": "1"} for i in range(40)]
    a = split_by_question(records, 10, seed=1)
    assert a == split_by_question(records, 10, seed=1)
    assert a != split_by_question(records, 10, seed=2)
    assert all(len(part) % 2 == 0 for part in a)  # questions of two traces never split


def test_same_text_under_two_idts_is_one_question():
    records = [{"idt": 1, "question": "How many apples?", "solution": "a", "solnum": "1"},
               {"idt": 2, "question": "how  many APPLES?", "solution": "b", "solnum": "1"},
               {"idt": 3, "question": "Other", "solution": "c", "solnum": "1"},
               {"idt": 1, "question": "How many apples? (restated)", "solution": "d", "solnum": "1"}]
    assert sorted(map(sorted, group_by_question(records))) == [[0, 1, 3], [2]]


def test_drop_excluded_says_how_many(tmp_path, shared_data):
    # The original's kept traces on test500, with 20 GSM8K train traces mixed in; the test set is held out.
    test_kept = read_json(TPT_REF / "gemma2b_test500" / "correct_answers.json")
    train_kept = read_json(TPT_REF / "ev.json")[:20]
    kept = tmp_path / "kept.json"
    kept.write_text(json.dumps(test_kept + train_kept))
    result = make_json("--input", kept, "--train_output", tmp_path / "t.json", "--eval_output", tmp_path / "e.json",
                       "--train_size", 15, "--exclude", TPT_REF / "test500.json", "--drop_excluded")
    assert f"dropped {len(test_kept)} traces" in result.stdout
    out = read_json(tmp_path / "t.json") + read_json(tmp_path / "e.json")
    assert len(out) == 20 and {r["idt"] for r in out} <= {r["idt"] for r in train_kept}


def _drop_last_trace(path):
    path.write_text(json.dumps(read_json(path)[:-1]))


@pytest.mark.parametrize("flags, change, named", [
    ([], None, None),  # the same inputs and settings: one skip line, nothing rewritten
    (["--train_size", "100"], None, "train_size: 150 -> 100"),  # a changed setting: split again, named
    ([], _drop_last_trace, "kept_sha256"),  # an input file's content changed: split again
])
def test_run_again_skips_the_same_and_redoes_a_change(tmp_path, shared_data, flags, change, named):
    kept = tmp_path / "kept.json"
    kept.write_text(json.dumps(read_json(TPT_REF / "ev.json")))
    data = tmp_path / "data"
    first = ["--input", kept, "--train_output", data / "train.json", "--eval_output", data / "eval.json",
             "--train_size", 150, "--exclude", TPT_REF / "test500.json"]
    make_json(*first)
    outputs = ("train.json", "eval.json", "make_json_manifest.json")
    stamps = {name: (data / name).stat().st_mtime_ns for name in outputs}
    if change:
        change(kept)
    again = make_json(*first, *flags)
    if named is None:
        assert again.stdout == f"skip: {data}: split finished, same settings, inputs and code; nothing to do\n"
        assert {name: (data / name).stat().st_mtime_ns for name in outputs} == stamps
    else:
        assert again.stdout.startswith(f"redo: {data}: ") and named in again.stdout.splitlines()[0]
        assert all((data / name).stat().st_mtime_ns != stamp for name, stamp in stamps.items())
        manifest = read_json(data / "make_json_manifest.json")
        assert manifest["input_traces"] == len(read_json(kept))  # made from the new input
        assert manifest["args"]["train_size"] == (100 if flags else 150)  # and the new setting
        # and now it is the finished run
        assert make_json(*first, *flags).stdout == f"skip: {data}: split finished, same settings, inputs and code; nothing to do\n"
