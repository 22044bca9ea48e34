"""Bad input: one clear line naming the file and the record, a non-zero exit, and no output written.
Readers are called directly; the CLIs (evmath.py, make_json.py) run as real subprocesses.
Runtime budget: < 15 s.
"""
import json
import os
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT, TPT_REF
from tpt.io import DataError, read_questions, read_samples

QUESTIONS = [
    {"idt": 3, "question": "What is 1+1?", "solution": "1+1=2\n#### 2", "solnum": "2"},
    {"idt": 8, "question": "What is 2+2?", "solution": "2+2=4\n#### 4", "solnum": "4"},
]


def write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return str(path)


QUESTION_FILE_CASES = [
    # (file content, words the message must hold)
    (None, ["file not found"]),  # a missing file
    ('[{"idt": 1, "question": "q"', ["malformed JSON", "line 1"]),  # a truncated JSON list
    ([{"idt": 1, "question": "q", "solution": "s"}], ["record 0", "missing field 'solnum'"]),  # no solnum
    ([{"idt": 1, "question": 7, "solution": "s", "solnum": "1"}], ["record 0", "'question' must be str"]),
    ([QUESTIONS[0], QUESTIONS[0]], ["record 1", "duplicate idt 3"]),  # a duplicate idt
    ('{"question": "q", "answer": "no final line"}\n', ["record 0", "no '#### N'"]),  # GSM8K line without ####
    ('{"question": "q", "answer": "#### 1"}\n{oops\n', ["line 2", "malformed JSON"]),  # a bad JSONL line
    ("5", ["expected a JSON list or JSON lines"]),  # neither a list nor JSON lines
    ("", ["empty file"]),  # an empty file
]


@pytest.mark.parametrize("content,words", QUESTION_FILE_CASES)
def test_read_questions_bad_input(tmp_path, content, words):
    path = tmp_path / "questions.json"
    if content is not None:
        write(path, content)
    with pytest.raises(DataError) as err:
        read_questions(str(path))
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message


def test_read_questions_accepts_id_and_gsm8k(tmp_path):
    # The original's kept-trace files say `id`; GSM8K's own lines derive solnum from `#### N`.
    kept = write(tmp_path / "kept.json", [{"id": 5, "question": "q", "solution": "s", "solnum": "2,125"}])
    assert read_questions(kept)[0]["idt"] == 5
    gsm = write(tmp_path / "g.jsonl", '{"question": "q", "answer": "a\\n#### 1,000"}\n')
    assert read_questions(gsm)[0]["solnum"] == "1,000"


SAMPLE_FILE_CASES = [
    # (sample records, words the message must hold)
    ([{"qnum": 3, "solution": "#### 2"}], ["has 1 records, expected 2"]),  # wrong number of records
    ([{"qnum": 3, "solution": "x"}, {"qnum": 99, "solution": "y"}], ["record 1", "qnum 99"]),  # unknown qnum
    ([{"qnum": 3, "solution": "x"}, {"qnum": 3, "solution": "y"}], ["record 1", "appears twice"]),
    ([{"qnum": 3}, {"qnum": 8, "solution": "y"}], ["record 0", "missing field 'solution'"]),
    ([{"qnum": 3, "solution": 5}, {"qnum": 8, "solution": "y"}], ["record 0", "'solution' must be str"]),
]


@pytest.mark.parametrize("records,words", SAMPLE_FILE_CASES)
def test_read_samples_bad_input(tmp_path, records, words):
    path = write(tmp_path / "e0.json", records)
    with pytest.raises(DataError) as err:
        read_samples(path, QUESTIONS)
    assert path in str(err.value)
    for word in words:
        assert word in str(err.value)


def run(script, *args):
    return subprocess.run([PYTHON, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def make_samples(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for i, records in enumerate(files):
        write(folder / f"e{i}.json", records)


GOOD = [{"qnum": 3, "question": "What is 1+1?", "solution": "#### 2"},
        {"qnum": 8, "question": "What is 2+2?", "solution": "#### 5"}]

EVMATH_CASES = [
    # (name, e-files, words in the error line)
    ("missing e1.json", [GOOD], ["e1.json", "not found"]),
    ("malformed e1.json", [GOOD, "[{"], ["e1.json", "malformed JSON"]),
    ("wrong count", [GOOD, GOOD[:1]], ["e1.json", "has 1 records, expected 2"]),
    ("unknown qnum", [GOOD, [GOOD[0], dict(GOOD[1], qnum=77)]], ["e1.json", "record 1", "qnum 77"]),
]


@pytest.mark.parametrize("name,files,words", EVMATH_CASES, ids=[c[0] for c in EVMATH_CASES])
def test_evmath_bad_input_writes_nothing(tmp_path, name, files, words):
    answers = write(tmp_path / "answers.json", QUESTIONS)
    make_samples(tmp_path / "run", files)
    before = set(os.listdir(tmp_path / "run"))
    result = run("evmath.py", "--samples_dir", tmp_path / "run", "--answer_path", answers, "--num_samples", 2)
    assert result.returncode != 0
    error_lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in result.stderr
    for word in words:
        assert word in error_lines[0]
    assert set(os.listdir(tmp_path / "run")) == before  # no scored.json, no correct_answers.json, no manifest


def test_evmath_root_with_one_bad_folder_writes_nothing(tmp_path):
    # A root of several model folders is validated as a whole before any folder gets outputs.
    answers = write(tmp_path / "answers.json", QUESTIONS)
    make_samples(tmp_path / "root" / "a_good", [GOOD, GOOD])
    make_samples(tmp_path / "root" / "b_bad", [GOOD, GOOD[:1]])
    result = run("evmath.py", "--samples_dir", tmp_path / "root", "--answer_path", answers, "--num_samples", 2)
    assert result.returncode != 0 and "b_bad" in result.stderr
    assert sorted(os.listdir(tmp_path / "root" / "a_good")) == ["e0.json", "e1.json"]


def test_evmath_bad_answer_file(tmp_path):
    make_samples(tmp_path / "run", [GOOD])
    answers = write(tmp_path / "answers.json", [QUESTIONS[0], QUESTIONS[0]])
    result = run("evmath.py", "--samples_dir", tmp_path / "run", "--answer_path", answers, "--num_samples", 1)
    assert result.returncode != 0 and "duplicate idt 3" in result.stderr and "answers.json" in result.stderr
    assert os.listdir(tmp_path / "run") == ["e0.json"]


@pytest.mark.parametrize("content,words", [
    ("[{", ["kept.json", "malformed JSON"]),  # a truncated input
    ([{"idt": 1, "question": "q", "solution": "s"}], ["kept.json", "record 0", "solnum"]),  # a missing field
])
def test_make_json_bad_input_writes_nothing(tmp_path, content, words):
    kept = write(tmp_path / "kept.json", content)
    result = run("make_json.py", "--input", kept, "--train_output", tmp_path / "out" / "train.json",
                 "--eval_output", tmp_path / "out" / "eval.json")
    assert result.returncode != 0 and result.stderr.startswith("error:")
    for word in words:
        assert word in result.stderr
    assert not (tmp_path / "out").exists()


def test_make_json_refuses_held_out_questions(tmp_path):
    # The original project's own kept traces on the test set, split with the test set held out.
    kept = TPT_REF / "gemma2b_test500" / "correct_answers.json"
    result = run("make_json.py", "--input", kept, "--train_output", tmp_path / "out" / "train.json",
                 "--eval_output", tmp_path / "out" / "eval.json", "--exclude", TPT_REF / "test500.json")
    assert result.returncode != 0
    assert "record 0" in result.stderr and "held-out" in result.stderr and "test500.json" in result.stderr
    assert not (tmp_path / "out").exists()


def test_evmath_scores_a_limited_run_against_the_whole_answer_file(tmp_path):
    # gen_synth.py --limit samples the first questions of a file; the answer file still holds them all, as the
    # original's `--answer_path data/gsm8ktrain.json` did. Only the sampled questions are scored.
    answers = write(tmp_path / "answers.json", QUESTIONS)
    make_samples(tmp_path / "run", [GOOD[:1], GOOD[:1]])
    result = run("evmath.py", "--samples_dir", tmp_path / "run", "--answer_path", answers, "--num_samples", 2)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "pass_at_k_results.json").read_text())
    assert summary["num_questions"] == 1 and summary["pass@1"] == 1.0
