"""The vLLM adapter (tpt/backends/vllm_backend.py) against vLLM 0.33's installed front end, with the engine double
(tests/vllm_double.py) in place of the model and the GPUs, driven through tpt.backends.load_backend and the real
gen_synth.py / gen_eval.py: only what a CPU engine cannot show (GPU memory, tensor parallel, GPU groups, a request
vLLM aborts), and that the arguments bind to vLLM 0.33's signatures. Sampling itself (seeds, greedy, ignore_eos,
stop tokens, max_model_len, a killed run resumed, a dead engine) is tested on the real engine in
tests/test_vllm_engine.py.

Runs under `make test-vllm-gpu` (.venv-vllm, vLLM 0.33's GPU build, which imports without a GPU;
TPT_REQUIRE_VLLM=1 turns a missing vllm into a failure, so nothing is skipped there); under `make test` (no vllm in
.venv) the module is skipped with the reason. Not under vLLM's CPU build: there vLLM's platform is the CPU, and
the double stands in for GPUs. No test keeps an engine
while another needs the same (fake) GPU memory: every test builds its own engines and closes them, and the one
test that runs a script beside a live engine gives both a --gpu_memory_utilization that fits.
Budget: ~3 minutes on 2 cores (each subprocess imports vllm, ~10 s).
"""
import contextlib
import inspect
import itertools
import json
import os
import signal
import subprocess

import pytest

from tpt.backends import Sampling, question_seeds

from tests.conftest import GSM8K, PYTHON, ROOT

if os.environ.get("TPT_REQUIRE_VLLM"):
    import vllm  # noqa: F401  (make test-vllm: a missing vllm is a failure, not a skip)
else:
    pytest.importorskip("vllm", reason="vllm is not installed (make test-vllm-gpu installs it into .venv-vllm)")

import vllm_double  # noqa: E402  (tests/ is on sys.path, as for conftest)

pytestmark = pytest.mark.slow  # a model loaded in every test (pytest -m 'not slow' leaves them out)

SITE = ROOT / "tests" / "vllm_double_site"
MAX_MODEL_LEN = 512


@pytest.fixture(scope="module")
def model():
    from tpt.generate import load_tokenizer
    from tpt.models import resolve_model

    path = resolve_model("smollm2-135m")
    return path, load_tokenizer(path)


@pytest.fixture
def gpus(tmp_path, monkeypatch):
    """Four fake GPUs with an empty memory ledger; the double in this process and in every process it starts."""
    import torch
    import vllm

    ledger = tmp_path / "gpus"
    ledger.mkdir()
    monkeypatch.setenv("TPT_DOUBLE_DIR", str(ledger))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SITE), str(ROOT)]))
    monkeypatch.setattr(vllm, "LLM", vllm_double.DoubleLLM)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return ledger


@contextlib.contextmanager
def deadline(seconds):
    """Fail instead of hanging: a blocked pipe read is interrupted by the alarm."""
    def expire(signum, frame):
        raise TimeoutError(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def engine(model, **options):
    from tpt.backends import EngineConfig, load_backend

    path, tokenizer = model
    backend = load_backend("vllm", path, tokenizer, EngineConfig(max_model_len=MAX_MODEL_LEN, seed=0, **options))
    try:
        yield backend
    finally:
        backend.close()


def prompts(model, k=3):
    from tpt.prompt import encode_prompt

    lines = (GSM8K / "test.jsonl").read_text().splitlines()[:k]
    return [encode_prompt(model[1], json.loads(line)["question"]) for line in lines]


def script_env(ledger, devices):
    return {**os.environ, "TPT_DOUBLE_DIR": str(ledger), "CUDA_VISIBLE_DEVICES": devices,
            "PYTHONPATH": os.pathsep.join([str(SITE), str(ROOT)])}


def run_script(cmd, env, timeout=300):
    """A script in its own session, so a hung run's workers are killed with it."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[1]} hung for {timeout} s; stderr ends:\n{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# --- conformance: what the adapter gives vLLM binds to the installed signatures, for every flag combination ---

def generation_flag_values():
    """Every value each engine flag of gen_synth.py / gen_eval.py can take (choices, both sides of switches)."""
    from tpt.generate import add_generation_args
    import argparse

    parser = argparse.ArgumentParser()
    add_generation_args(parser, temperature=0.8)
    actions = {a.dest: a for a in parser._actions}
    return {
        "dtype": list(actions["dtype"].choices),
        "enforce_eager": [False, True],
        "trust_remote_code": [False, True],
        "tensor_parallel_size": [1, 2],
        "gpu_memory_utilization": [actions["gpu_memory_utilization"].default, 0.5],
        "max_model_len": [actions["max_model_len"].default, None],
    }


def test_engine_arguments_bind_to_the_installed_llm_and_engine_args(model):
    from vllm import LLM, EngineArgs

    from tpt.backends import EngineConfig
    from tpt.backends.vllm_backend import llm_kwargs

    values = generation_flag_values()
    for combo in itertools.product(*values.values()):
        options = dict(zip(values, combo))
        for on_cpu in (False, True):  # on vLLM's CPU build chunked prefill is off
            kwargs = llm_kwargs(model[0], EngineConfig(seed=3, **options), on_cpu=on_cpu)
            inspect.signature(LLM.__init__).bind(None, **kwargs)
            EngineArgs(**kwargs)  # the dataclass LLM builds from them: unknown names and bad values raise


@pytest.mark.parametrize("temperature,num_samples,top_p,ignore_eos,max_tokens", list(itertools.product(
    (0.0, 0.7, 0.8),   # greedy, Eval's and Think's defaults
    (1, 10),           # one sample, Eval's default N
    (1.0, 0.95),       # nucleus off and on
    (False, True),     # ignore_eos (bench)
    (1, 1500),         # the smallest reply and the default
)))
def test_sampling_arguments_bind_and_pass_vllms_validation(temperature, num_samples, top_p, ignore_eos, max_tokens):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from tpt.backends.vllm_backend import sampling_kwargs, tokens_prompt

    kwargs = sampling_kwargs(Sampling(num_samples, temperature, top_p, max_tokens, ignore_eos=ignore_eos), seed=11,
                             stop_ids=[2])
    inspect.signature(SamplingParams).bind(**kwargs)
    params = SamplingParams(**kwargs)  # SamplingParams' own checks (greedy n, top_p range, ...)
    assert params.max_tokens == max_tokens
    prompt = tokens_prompt([1, 2, 3])
    assert set(prompt) <= set(TokensPrompt.__annotations__) and TokensPrompt.__required_keys__ <= set(prompt)


# --- the adapter through load_backend, on the double ---

@pytest.mark.parametrize("reason", ["abort", "error"])
def test_aborted_or_failed_request_is_an_error_not_a_sample(model, gpus, monkeypatch, reason):
    # a request vLLM aborted or failed has no reply; counting it as a truncated sample hides the failure
    from tpt.io import DataError

    monkeypatch.setenv("TPT_DOUBLE_FINISH", reason)
    with engine(model) as be:
        with pytest.raises(Exception) as failure:
            be.generate(prompts(model), Sampling(2, 0.8, 1.0, 16), seeds=question_seeds(0, range(len(prompts(model)))))
    assert isinstance(failure.value, DataError) and f"finished with {reason!r}" in str(failure.value)


def test_engine_out_of_memory_at_start_is_one_line(model, gpus):
    from tpt.io import DataError

    vllm_double.occupy(0, 0.5)  # another job holds half of GPU 0
    with pytest.raises(DataError) as failure:
        with engine(model):
            pass
    assert str(failure.value).startswith("vLLM engine (CUDA_VISIBLE_DEVICES=0,1,2,3) failed to start: ValueError: "
                                         "Free memory on device cuda:0 (40.00/80.00 GiB) on startup is less than "
                                         "desired GPU memory utilization (0.92, 73.60 GiB)")


# --- the scripts on the double ---

def test_gen_eval_beside_a_live_engine_with_greedy_samples(model, tmp_path, gpus):
    # an engine held in this process and a script's engine share GPU 0 when both ask for what fits;
    # --temperature 0 with Eval's default 10 samples (greedy with n > 1, above) through the script
    out = tmp_path / "eval"
    with engine(model, gpu_memory_utilization=0.45):
        proc = run_script([PYTHON, str(ROOT / "gen_eval.py"), "--backend", "vllm", "--math",
                           str(GSM8K / "test.jsonl"), "--limit", "4", "--temperature", "0", "--max_tokens", "16",
                           "--max_model_len", "512", "--gpu_memory_utilization", "0.45", "--outputdir", str(out)],
                          script_env(gpus, "0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [json.loads((out / f"e{j}.json").read_text()) for j in range(10)]
    assert all([r["qnum"] for r in f] == [0, 1, 2, 3] for f in files)
    assert all(len({f[i]["solution"] for f in files}) == 1 for i in range(4))  # greedy: one reply, ten times
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "vllm" and manifest["scores"]["num_samples"] == 10
    assert "backend vllm" in proc.stdout
