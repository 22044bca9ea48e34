"""The vLLM backend on a CUDA GPU with the embedded model. Skipped (with the reason) where vLLM is not
installed or no CUDA device is visible, as on the 2-core CI machine. Budget ~2 minutes on a GPU."""
import json
import subprocess

import pytest

from conftest import GSM8K, PYTHON, ROOT
from tpt.backends import vllm_status

usable, reason = vllm_status()
pytestmark = pytest.mark.skipif(not usable, reason=reason)


@pytest.fixture(scope="module")
def backend():
    from tpt.backends import load_backend
    from tpt.generate import load_tokenizer
    from tpt.models import resolve_model

    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path)
    be = load_backend("vllm", path, tokenizer, max_model_len=1024, seed=0)
    yield be, tokenizer
    be.close()


def prompts(tokenizer, k=3):
    from tpt.prompt import encode_prompt

    lines = (GSM8K / "test.jsonl").read_text().splitlines()[:k]
    return [encode_prompt(tokenizer, json.loads(line)["question"]) for line in lines]


def test_n_samples_per_question_with_finish_reasons(backend):
    be, tokenizer = backend
    out = be.generate(prompts(tokenizer), 4, 0.8, 1.0, 32, seed=0)
    assert len(out) == 3 and all(len(samples) == 4 for samples in out)
    for samples in out:
        for s in samples:
            assert s["finish_reason"] in ("stop", "length") and 1 <= s["num_tokens"] <= 32
        assert len({s["text"] for s in samples}) > 1  # the n children got different seeds


def test_same_seed_same_samples_and_greedy_at_temperature_zero(backend):
    be, tokenizer = backend
    p = prompts(tokenizer)
    assert be.generate(p, 2, 0.8, 1.0, 24, seed=5) == be.generate(p, 2, 0.8, 1.0, 24, seed=5)
    greedy = be.generate(p, 2, 0.0, 1.0, 24, seed=5)
    assert all(samples[0]["text"] == samples[1]["text"] for samples in greedy)


def test_ignore_eos_gives_full_length(backend):
    be, tokenizer = backend
    out = be.generate(prompts(tokenizer, 1), 2, 0.8, 1.0, 40, seed=0, ignore_eos=True)
    assert all(s["num_tokens"] == 40 and s["finish_reason"] == "length" for s in out[0])


def test_gen_synth_on_vllm_writes_the_same_files(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([PYTHON, str(ROOT / "gen_synth.py"), "--backend", "vllm", "--math",
                           str(GSM8K / "test.jsonl"), "--limit", "4", "--num_samples", "2", "--max_tokens", "24",
                           "--max_model_len", "1024", "--output_dir", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "vllm" and manifest["num_questions"] == 4
    for j in range(2):
        records = json.loads((out / f"e{j}.json").read_text())
        assert [r["qnum"] for r in records] == [0, 1, 2, 3]
        assert all(r["solution"].strip() and r["finish_reason"] in ("stop", "length") for r in records)
