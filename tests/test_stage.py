"""The finished-run protocol (tpt/stage.py) across versions: folders finished by the previous TPT (its manifests in
tests/data/previous_tpt, written by that code on the embedded model and real GSM8K test questions) are still
skipped by Think and Train, and Eval re-scores the samples it has (that code recorded no scorer) without sampling.
Runtime budget: ~25 s (three script starts that load no model, one of them importing TRL).
"""
import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import GSM8K, PYTHON, ROOT

PREVIOUS = ROOT / "tests" / "data" / "previous_tpt"
# The flags those runs were made with (their folders and files put here by the test).
QUESTIONS = ["--math", str(GSM8K / "test.jsonl"), "--limit", "2", "--max_tokens", "8", "--backend", "hf"]
NO_TORCH = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            "assert 'torch' not in sys.modules, 'a model was loaded'")


def _run(cmd):
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def _stamps(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


@pytest.mark.parametrize("name, command", [
    # Think: the previous code's finished folder, the same flags: skipped, no model loaded
    ("think", lambda out: [PYTHON, "-c", NO_TORCH, str(ROOT / "gen_synth.py"), *QUESTIONS, "--num_samples", "1",
                           "--output_dir", str(out)]),
    # Train: the previous code's finished folder (its fingerprint as that code computed it), the same flags and
    # train data: skipped before any model loads
    ("train", lambda out: [PYTHON, str(ROOT / "sft_math.py"), "--train_data_path", str(out.parent / "train.json"),
                           "--output_dir", str(out), "--report_to", "none", "--max_steps", "1", "--bf16", "false"]),
], ids=["think", "train"])
def test_folders_finished_by_the_previous_code_are_still_skipped(tmp_path, shared_data, name, command):
    out = tmp_path / name
    shutil.copytree(PREVIOUS / name, out)
    shutil.copy(PREVIOUS / "train.json", tmp_path / "train.json")
    before = _stamps(out)
    proc = _run(command(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    skips = [line for line in proc.stdout.splitlines() if line.startswith("skip: ")]
    assert skips == [f"skip: {out}: {name.capitalize()} finished, same settings, inputs and code; nothing to do"]
    assert _stamps(out) == before


def test_eval_finished_by_the_previous_code_is_rescored_not_resampled(tmp_path, shared_data):
    out = tmp_path / "eval"
    shutil.copytree(PREVIOUS / "eval", out)
    samples = {f: (out / f).read_bytes() for f in ("e0.json", "e1.json")}
    old = json.loads((out / "manifest.json").read_text())
    assert "scorer_sha256" not in old
    cmd = [PYTHON, "-c", NO_TORCH, str(ROOT / "gen_eval.py"), *QUESTIONS, "--numsamples", "2", "--outputdir", str(out)]
    proc = _run(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"redo: {out}: its scores (the scorer's code changed since they were written)\n")
    assert {f: (out / f).read_bytes() for f in samples} == samples  # nothing sampled again
    manifest = json.loads((out / "manifest.json").read_text())
    # the settings added since (the prompt task) are recorded at the values the old run sampled with, and
    # --batch_size, fingerprinted then, no longer is (it changes no seed)
    kept = {k: v for k, v in old["fingerprint"].items() if k != "batch_size"}
    assert "batch_size" in old["fingerprint"] and manifest["fingerprint"] == kept | {"task": "tpt",
                                                                                   "apply_chat_template": False}
    assert manifest["generated_tokens"] == old["generated_tokens"]
    assert manifest["scorer_sha256"] and manifest["scores"]["num_questions"] == 2
    # and now it is this code's finished run
    again = _run(cmd)
    assert again.returncode == 0 and again.stdout.startswith(
        f"skip: {out}: Eval finished, same settings, inputs and code; nothing to do\n"), again.stderr[-3000:]
