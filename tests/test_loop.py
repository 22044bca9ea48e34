"""runs/loop.sh end to end on a tiny setting: the real scripts, the real embedded model, real processes.

The questions are one-step sums that SmolLM2-135M answers greedily with the plain template, so a round keeps
at least one trace and every stage (Eval, Think, Prune, Train, Eval, report) really runs. One loop is killed in
the middle of Think and started again (it must finish with whole files), then run a third time (nothing reruns).
That loop trains through a two-node TRAIN_LAUNCH: tests/two_nodes.sh (what srun does across nodes, here twice on
this machine) starting two `torchrun --nnodes 2 --nproc_per_node 1` agents joined by a c10d rendezvous on
127.0.0.1, so two gloo ranks on two "nodes": one loop run less than testing the launcher in a loop of its own (the
one-node launch is tested in test_sft_math.py). Then it is started again with a changed EVAL_N and
with a changed LR: the stage whose setting changed refuses, never silently keeps its old run.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import PYTHON, ROOT, free_port

SUMS = [(1, 1), (2, 2), (3, 3), (5, 1), (4, 4), (2, 3), (6, 2), (7, 1), (3, 4), (8, 1)]


def _questions(pairs, offset):
    return [{"idt": offset + i, "question": f"What is {a} + {b}? Reply with just the number.",
             "solution": f"{a} + {b} = {a + b}\n#### {a + b}", "solnum": str(a + b)} for i, (a, b) in enumerate(pairs)]


def _env(tmp_path, train, test, out):
    env = dict(os.environ, MODEL="smollm2-135m", TRAIN_QUESTIONS=str(train), TEST_QUESTIONS=str(test), OUT=str(out),
               ROUNDS="1", N="1", EVAL_N="1", TEMPERATURE="0", EVAL_TEMPERATURE="0", MAX_TOKENS="16",
               MAX_MODEL_LEN="512", TEMPLATE="plain", BACKEND="hf", BATCH_SIZE="2", TRAIN_SIZE="100",
               REPORT_TO="none", PYTHON=PYTHON, WANDB_MODE="offline",
               SFT_ARGS="--max_steps 1 --per_device_train_batch_size 2 --gradient_accumulation_steps 1")
    return env


def _write(path, records):
    path.write_text(json.dumps(records))
    return path


# Every stage's completion marker, in the order the loop writes them.
MARKERS = ["round0/eval/manifest.json", "round1/think/manifest.json", "round1/think/evmath_manifest.json",
           "round1/data/make_json_manifest.json", "round1/model/manifest.json", "round1/eval/manifest.json",
           "report/report.md"]


@pytest.mark.slow
def test_loop_killed_in_think_resumes_then_skips_everything(tmp_path):
    train = _write(tmp_path / "train.json", _questions(SUMS[:8], 0))
    test = _write(tmp_path / "test.json", _questions(SUMS[8:], 100))
    out = tmp_path / "out"
    env = _env(tmp_path, train, test, out)
    # torchrun from the test interpreter's environment, as `pip install -r requirements.txt` puts it on PATH.
    env.update(PATH=os.path.dirname(PYTHON) + os.pathsep + env["PATH"],
               TRAIN_LAUNCH=f"bash {ROOT / 'tests' / 'two_nodes.sh'} torchrun --nnodes 2 --nproc_per_node 1 "
                            f"--rdzv_backend c10d --rdzv_endpoint 127.0.0.1:{free_port()} --rdzv_id loop",
               OMP_NUM_THREADS="1",  # one thread a rank, as torchrun sets for two ranks on one node
               # Two greedy samples per question and one row: Think journals 2 questions a call (4 x BATCH_SIZE
               # sequences), so it spends several calls journaling and the kill lands between two of them.
               N="2", BATCH_SIZE="1")
    loop = [str(ROOT / "runs" / "loop.sh")]

    # 1. Start the loop and kill its whole process group once Think has journaled a batch but not finished.
    proc = subprocess.Popen(["bash", *loop], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    journal = out / "round1" / "think" / ".journal.jsonl"
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            if journal.exists() and len(journal.read_text().splitlines()) >= 2:  # header + a finished question
                break
            assert proc.poll() is None, "the loop ended before Think journaled anything"
            time.sleep(0.05)
        else:
            pytest.fail("Think never journaled a batch")
        assert not (out / "round1" / "think" / "manifest.json").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "round1" / "think" / "e0.json").exists()

    # 2. Started again, it completes: every stage's outputs exist and are whole.
    done = subprocess.run(["bash", *loop], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for marker in MARKERS:
        assert (out / marker).is_file(), marker
    assert done.stdout.strip().splitlines()[-1] == f"report: {out / 'report' / 'report.md'}"
    assert "skip: " + str(out / "round0" / "eval") in done.stdout  # finished before the kill, not redone
    samples = json.loads((out / "round1" / "think" / "e0.json").read_text())
    assert sorted(r["qnum"] for r in samples) == list(range(8))
    kept = json.loads((out / "round1" / "data" / "train.json").read_text())
    assert kept, "the round kept no trace, so Train could not have run"
    assert (out / "round1" / "model" / "model.safetensors").is_file()
    assert json.loads((out / "round1" / "model" / "manifest.json").read_text())["world_size"] == 2  # two ranks trained

    # 3. Run again: every stage is skipped, no file is rewritten.
    stamps = {m: (out / m).stat().st_mtime_ns for m in MARKERS[:-1]}
    again = subprocess.run(["bash", *loop], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skip: ") == 6
    assert {m: (out / m).stat().st_mtime_ns for m in MARKERS[:-1]} == stamps

    # 4. Started again with another EVAL_N: the base model's Eval refuses with one line naming its folder and the
    # setting, and the loop stops there. Nothing is rewritten.
    stamps = {m: (out / m).stat().st_mtime_ns for m in MARKERS}
    changed = subprocess.run(["bash", *loop], cwd=ROOT, env=env | {"EVAL_N": "2"}, capture_output=True, text=True,
                             timeout=300)
    assert changed.returncode != 0
    errors = [line for line in changed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, changed.stderr[-3000:]
    assert str(out / "round0" / "eval") in errors[0] and "num_samples" in errors[0]
    assert {m: (out / m).stat().st_mtime_ns for m in MARKERS} == stamps

    # 5. Started again with another LR: Eval, Think and Prune are the same runs and skip; Train refuses with one
    # line naming learning_rate, and the loop stops there. Nothing is rewritten.
    changed = subprocess.run(["bash", *loop], cwd=ROOT, env=env | {"LR": "1e-5"}, capture_output=True, text=True,
                             timeout=300)
    assert changed.returncode != 0
    R = out / "round1"
    for line in (f"skip: {out / 'round0' / 'eval'}: Eval finished", f"skip: {R / 'think'}: Think finished",
                 f"skip: {R / 'think'}: scoring finished", f"skip: {R / 'data'}: split finished"):
        assert line in changed.stdout, line
    errors = {line for line in changed.stderr.splitlines() if line.startswith("error:")}  # each rank says it
    assert len(errors) == 1, changed.stderr[-3000:]
    error = errors.pop()
    assert str(R / "model") in error and "learning_rate" in error
    assert {m: (out / m).stat().st_mtime_ns for m in MARKERS} == stamps


def test_layout_prints_the_folders_loop_sh_reads(tmp_path):
    # runs/loop.sh evals these assignments: each path must come through whole, a space in OUT included.
    out = tmp_path / "my out"
    script = ('eval "$("$1" -m tpt.layout --out "$2" --round 2)"; '
              'printf "%s\\n" "$think_dir" "$model_dir" "$train_traces" "$report_dir" "$kept_file"')
    shown = subprocess.run(["bash", "-c", script, "bash", PYTHON, str(out)], cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [str(out / "round2" / "think"), str(out / "round2" / "model"),
                                         str(out / "round2" / "data" / "train.json"), str(out / "report"),
                                         "correct_answers.json"]


def test_loop_refuses_train_questions_that_are_in_the_test_set(tmp_path):
    # The third test question is also a train question: nothing may run, nothing may be written.
    train = _write(tmp_path / "train.json", _questions(SUMS[:4], 0))
    test = _write(tmp_path / "test.json", _questions(SUMS[2:3], 100))
    out = tmp_path / "out"
    env = _env(tmp_path, train, test, out)
    # the older names TRAIN_DATA / TEST_DATA (the README's recipe before TRAIN_QUESTIONS) still name the files
    env["TRAIN_DATA"], env["TEST_DATA"] = env.pop("TRAIN_QUESTIONS"), env.pop("TEST_QUESTIONS")
    done = subprocess.run(["bash", str(ROOT / "runs" / "loop.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "error:" in done.stderr and str(train) in done.stderr and str(test) in done.stderr
    assert not out.exists()


# Products SmolLM2-135M gets wrong greedily: they stay unsolved through the resampling pass (greedy repeats
# itself), so the hinted pass has questions to sample.
PRODUCTS = [(347, 29), (58, 91), (76, 43), (239, 17)]


@pytest.mark.slow
def test_loop_with_resampling_and_rationalization_killed_mid_pass(tmp_path):
    products = [{"idt": 50 + i, "question": f"What is {a} * {b}? Reply with just the number.",
                 "solution": f"{a} * {b} = {a * b}\n#### {a * b}", "solnum": str(a * b)} for i, (a, b) in enumerate(PRODUCTS)]
    train = _write(tmp_path / "train.json", _questions(SUMS[:4], 0) + products)
    test = _write(tmp_path / "test.json", _questions(SUMS[8:], 100))
    out = tmp_path / "out"
    # N=2 on one row: a pass journals 2 questions a call, so the hinted pass (4 or more unsolved) takes 2 calls or more.
    env = _env(tmp_path, train, test, out) | {"RESAMPLE_N": "1", "RATIONALIZE": "1", "N": "2", "BATCH_SIZE": "1"}
    loop = ["bash", str(ROOT / "runs" / "loop.sh")]
    R = out / "round1"

    # 1. Kill the loop once the hinted pass has journaled a question but not finished.
    proc = subprocess.Popen(loop, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    journal = R / "think_hint" / ".journal.jsonl"
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            if journal.exists() and len(journal.read_text().splitlines()) >= 2:
                break
            assert proc.poll() is None, "the loop ended before the hinted pass journaled anything"
            time.sleep(0.05)
        else:
            pytest.fail("the hinted pass never journaled a batch")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (R / "think_hint" / "manifest.json").exists()
    stamps = {p: (R / p).stat().st_mtime_ns for p in ("think/manifest.json", "think/correct_answers.json",
                                                      "think_resample/manifest.json", "think_resample/correct_answers.json")}

    # 2. Started again: the finished passes are skipped untouched, the hinted pass resumes, every stage finishes.
    done = subprocess.run(loop, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"skip: {R / 'think'}: Think finished" in done.stdout
    assert f"skip: {R / 'think_resample'}: scoring finished" in done.stdout
    assert {p: (R / p).stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((R / "think_hint" / "manifest.json").read_text())["resumed_questions"] >= 1
    for marker in MARKERS:
        assert (out / marker).is_file(), marker

    # Each pass samples only what the passes before it left unsolved, and says so in `origin`.
    solved = set()
    for name, origin in (("think", "sample"), ("think_resample", "resample"), ("think_hint", "hint")):
        samples = json.loads((R / name / "e0.json").read_text())
        assert samples and {r["origin"] for r in samples} == {origin}
        assert not {r["qnum"] for r in samples} & solved
        solved |= {r["idt"] for r in json.loads((R / name / "correct_answers.json").read_text())}
    assert {r["qnum"] for r in json.loads((R / "think_hint" / "e0.json").read_text())} >= {50, 51, 52, 53} - solved
    train_set = json.loads((R / "data" / "train.json").read_text())
    assert {r["idt"] for r in train_set} == solved and {r["origin"] for r in train_set} <= {"sample", "resample", "hint"}


# A stand-in for python that records each stage's command line and runs only what the loop itself reads
# (tpt.layout's folders, the GPU count): the loop's own logic, without the stages' work.
RECORDER = """#!/usr/bin/env bash
case "$1" in
  -m|-c) exec "{python}" "$@" ;;
  *) printf '%s\\n' "$*" >> "{log}" ;;
esac
"""


@pytest.mark.parametrize("env, passed, not_passed", [
    # nothing set: no stage setting is passed, each stage's own default applies (one place: its --help)
    ({}, {}, ["--max_tokens", "--max_model_len", "--temperature", "--num_samples", "--learning_rate", "--template",
              "--train_size", "--max_per_question", "--num_train_epochs", "--backend", "--batch_size", "--limit"]),
    # set: passed to every stage that takes it, and to those only
    ({"MAX_TOKENS": "77", "EVAL_N": "3", "LR": "2e-6", "TEMPLATE": "plain", "SEED": "5"},
     {"gen_synth.py": ["--max_tokens 77", "--template plain", "--seed 6"],
      "gen_eval.py": ["--max_tokens 77", "--num_samples 3", "--template plain", "--seed 5"],
      "sft_math.py": ["--learning_rate 2e-6", "--template plain", "--seed 5"], "make_json.py": ["--seed 5"]},
     ["--temperature", "--max_model_len", "--train_size"]),
], ids=["unset", "set"])
def test_loop_passes_only_the_settings_its_user_set(tmp_path, env, passed, not_passed):
    log, fake = tmp_path / "calls.log", tmp_path / "python"
    fake.write_text(RECORDER.format(python=PYTHON, log=log))
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("N", "EVAL_N", "LR", "SEED", "TEMPLATE", "MAX_TOKENS")}
    done = subprocess.run(["bash", str(ROOT / "runs" / "loop.sh")], cwd=ROOT, capture_output=True, text=True,
                          env=base | {"PYTHON": str(fake), "OUT": str(tmp_path / "out")} | env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    calls = log.read_text().splitlines()
    scripts = {line.split()[0] for line in calls}
    assert {"gen_eval.py", "gen_synth.py", "evmath.py", "make_json.py", "sft_math.py", "report.py"} <= scripts
    for line in calls:
        for flag in not_passed:
            assert f"{flag} " not in line + " ", line
    for script, flags in passed.items():
        for line in (c for c in calls if c.startswith(script)):
            for flag in flags:
                assert f" {flag} " in f" {line} ", (script, flag, line)
