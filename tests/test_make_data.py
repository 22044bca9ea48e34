"""make_data.py and tpt.data: GSM8K question files from the real local files, reasoning-gym train/test sets that
never share a question, and the leakage check a loop calls. Budget: ~15 s on 2 cores (all real subprocesses)."""
import subprocess

import pytest

from tests.conftest import GSM8K, PYTHON, ROOT, TPT_REF
from tpt.data import check_disjoint, make_gym_split
from tpt.split import find_overlap
from tpt.io import DataError, gsm8k_final_number, normalize_text, read_json, read_jsonl, read_questions


def run(*args):
    return subprocess.run([PYTHON, str(ROOT / "make_data.py"), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_gsm8k_from_local_files(tmp_path, shared_data):
    proc = run("gsm8k", "--gsm8k_dir", GSM8K, "--out_dir", tmp_path, "--test_size", 500, "--seed", 3)
    assert proc.returncode == 0, proc.stderr
    for name, source, count in (("gsm8ktrain.json", "train.jsonl", 7473), ("gsm8ktest.json", "test.jsonl", 1319)):
        questions = read_questions(tmp_path / name)  # reads back through the project's own reader
        rows = read_jsonl(GSM8K / source)
        assert len(questions) == len(rows) == count
        assert [q["idt"] for q in questions] == list(range(count))  # idt = row index
        for q, row in zip(questions, rows):
            assert q["question"] == row["question"] and q["solution"] == row["answer"]
            assert q["solnum"] == row["answer"].rsplit("####", 1)[1].strip() == gsm8k_final_number(row["answer"])
    subset = read_questions(tmp_path / "gsm8ktest500.json")
    full = {q["idt"]: q for q in read_questions(tmp_path / "gsm8ktest.json")}
    assert len({q["idt"] for q in subset}) == 500 and all(full[q["idt"]] == q for q in subset)
    again = tmp_path / "again"
    assert run("gsm8k", "--gsm8k_dir", GSM8K, "--out_dir", again, "--test_size", 500, "--seed", 3).returncode == 0
    assert read_json(again / "gsm8ktest500.json") == read_json(tmp_path / "gsm8ktest500.json")  # seeded
    manifest = read_json(tmp_path / "make_data_manifest.json")
    assert manifest["files"] == {"gsm8ktrain.json": 7473, "gsm8ktest.json": 1319, "gsm8ktest500.json": 500}


def test_gsm8k_missing_dir_fails_cleanly(tmp_path):
    proc = run("gsm8k", "--gsm8k_dir", tmp_path / "nowhere", "--out_dir", tmp_path / "out")
    assert proc.returncode == 2 and "nowhere" in proc.stderr and "train.jsonl" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_gym_train_and_test_are_disjoint(tmp_path):
    proc = run("gym", "--out_dir", tmp_path, "--train_size", 120, "--test_size", 40, "--train_seed", 5, "--test_seed", 5000)
    assert proc.returncode == 0, proc.stderr
    train, test = read_questions(tmp_path / "train.json"), read_questions(tmp_path / "test.json")
    assert len(test) > 0 and len(train) > 0
    assert not {normalize_text(q["question"]) for q in train} & {normalize_text(q["question"]) for q in test}
    for q in train + test:
        float(q["solnum"])  # a numeric answer the scorer can compare
        assert q["solution"].endswith(f"#### {q['solnum']}")
    manifest = read_json(tmp_path / "make_data_manifest.json")
    assert manifest["files"] == {"train.json": len(train), "test.json": len(test)}
    assert len(train) == 120 - manifest["train_overlap"] - manifest["train_duplicates"]

    # Run again: the same flags skip (one line, nothing rewritten); another seed makes the data again and says so.
    flags = ["gym", "--out_dir", tmp_path, "--train_size", 120, "--test_size", 40, "--train_seed", 5, "--test_seed", 5000]
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = run(*flags)
    assert again.returncode == 0 and again.stdout == f"skip: {tmp_path}: data finished, same settings, inputs and code; nothing to do\n"
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps
    reseeded = run(*flags[:-1], 6000)
    assert reseeded.returncode == 0 and reseeded.stdout.startswith(f"redo: {tmp_path}: ")
    assert "test_seed: 5000 -> 6000" in reseeded.stdout.splitlines()[0]
    assert read_json(tmp_path / "make_data_manifest.json")["args"]["test_seed"] == 6000


def test_gym_overlap_is_removed_from_train():
    # one-digit sums of two terms: a small space, so two seeds certainly draw shared questions
    config = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
    train, test, counts = make_gym_split("chain_sum", 150, 60, 1, 1000, config)
    assert counts["train_overlap"] > 0
    assert len(train) == 150 - counts["train_overlap"] - counts["train_duplicates"]
    assert find_overlap(train, test) == []
    # reasoning-gym seeds item i with seed + i: seeds 1 and 2 would share 149 of 150 items, so they are refused
    with pytest.raises(DataError, match="must differ by at least"):
        make_gym_split("chain_sum", 150, 60, 1, 2, config)


def q(idt, text):
    return {"idt": idt, "question": text, "solution": "#### 1", "solnum": "1"}


@pytest.mark.parametrize("train, test, first", [
    # the same text: overlap at train record 0, test record 0
    ([q(0, "What is 2 + 2?")], [q(9, "What is 2 + 2?")], (0, 0)),
    # case and whitespace do not hide a shared question
    ([q(0, "Other"), q(1, "What  is 2 +\n2?")], [q(5, "x"), q(7, "what is 2 + 2?")], (1, 1)),
    # different questions: no overlap
    ([q(0, "What is 2 + 2?")], [q(0, "What is 2 + 3?")], None),
])
def test_check_disjoint(train, test, first):
    if first is None:
        check_disjoint(train, test, "a.json", "b.json")
        return
    with pytest.raises(DataError) as err:
        check_disjoint(train, test, "a.json", "b.json")
    i, j = first
    assert f"a.json: record {i}" in str(err.value) and f"b.json: record {j}" in str(err.value)


def test_check_cli_stops_on_the_real_leak(shared_data):
    # the original TPT split: math2b_2k.json (train) and ev.json share 72 records
    proc = run("check", "--train", TPT_REF / "math2b_2k.json", "--test", TPT_REF / "ev.json")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line
    assert "math2b_2k.json: record" in line and "ev.json: record" in line and "72 train question(s)" in line
    ok = run("check", "--train", TPT_REF / "ev.json", "--test", TPT_REF / "test500.json")
    assert ok.returncode == 0 and "share no question" in ok.stdout
