"""The vLLM adapter (tpt/backends/vllm_backend.py) against vLLM 0.33's installed front end, with the engine double
(tests/vllm_double.py) in place of the model and the GPUs, driven through tpt.backends.load_backend and the real
gen_synth.py / gen_eval.py.

Runs under `make test-vllm` (.venv-vllm; TPT_REQUIRE_VLLM=1 turns a missing vllm into a failure, so nothing is
skipped there); under `make test` (no vllm in .venv) the module is skipped with the reason. No test keeps an engine
while another needs the same (fake) GPU memory: every test builds its own engines and closes them, and the one
test that runs a script beside a live engine gives both a --gpu_memory_utilization that fits.
Budget: ~3 minutes on 2 cores (each subprocess and data-parallel worker imports vllm, ~10 s).
"""
import contextlib
import inspect
import itertools
import json
import os
import signal
import subprocess
import time

import pytest

from tpt.backends import question_seeds

from tests.conftest import GSM8K, PYTHON, ROOT

if os.environ.get("TPT_REQUIRE_VLLM"):
    import vllm  # noqa: F401  (make test-vllm: a missing vllm is a failure, not a skip)
else:
    pytest.importorskip("vllm", reason="vllm is not installed (make test-vllm installs it into .venv-vllm)")

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
        kwargs = llm_kwargs(model[0], EngineConfig(seed=3, **options))
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

    kwargs = sampling_kwargs(num_samples, temperature, top_p, max_tokens, seed=11, stop_ids=[2],
                             ignore_eos=ignore_eos)
    inspect.signature(SamplingParams).bind(**kwargs)
    params = SamplingParams(**kwargs)  # SamplingParams' own checks (greedy n, top_p range, ...)
    assert params.max_tokens == max_tokens
    prompt = tokens_prompt([1, 2, 3])
    assert set(prompt) <= set(TokensPrompt.__annotations__) and TokensPrompt.__required_keys__ <= set(prompt)


# --- the adapter through load_backend, on the double ---

def test_n_samples_per_question_in_question_order_and_seeded(model, gpus):
    p = prompts(model)
    with engine(model) as be:
        first = be.generate(p, 4, 0.8, 1.0, 32, seeds=question_seeds(5, range(len(p))))
        # the double returns the 4 children in a random order
        again = be.generate(p, 4, 0.8, 1.0, 32, seeds=question_seeds(5, range(len(p))))
        other = be.generate(p, 4, 0.8, 1.0, 32, seeds=question_seeds(6, range(len(p))))
        alone = be.generate(p[:1], 4, 0.8, 1.0, 32, seeds=question_seeds(5, range(len(p[:1]))))
    assert len(first) == 3 and all(len(samples) == 4 for samples in first)
    assert first == again and first != other
    assert alone[0] == first[0]  # a question's seed depends on its place in the call, not on the others
    for samples in first:
        assert len({s["text"] for s in samples}) == 4  # the children got different seeds
        for s in samples:
            assert s["finish_reason"] in ("stop", "length") and 1 <= s["num_tokens"] <= 32


def test_greedy_with_several_samples(model, gpus):
    # vLLM refuses n > 1 at temperature 0 (gen_eval.py --temperature 0 asks for 10)
    p = prompts(model)
    with engine(model) as be:
        a = be.generate(p, 10, 0.0, 1.0, 24, seeds=question_seeds(0, range(len(p))))
        b = be.generate(p, 10, 0.0, 1.0, 24, seeds=question_seeds(9, range(len(p))))
    assert a == b and all(len(samples) == 10 and len({s["text"] for s in samples}) == 1 for samples in a)


def test_ignore_eos_runs_every_reply_to_max_tokens(model, gpus):
    # with ignore_eos, the end tokens passed as stop_token_ids must not stop the reply either
    p = prompts(model)
    with engine(model) as be:
        stopped = be.generate(p, 2, 0.8, 1.0, 40, seeds=question_seeds(0, range(len(p))))
        full = be.generate(p, 2, 0.8, 1.0, 40, seeds=question_seeds(0, range(len(p))), ignore_eos=True)
    assert any(s["finish_reason"] == "stop" for samples in stopped for s in samples)  # the double does stop
    assert all(s["num_tokens"] == 40 and s["finish_reason"] == "length" for samples in full for s in samples)


def test_prompt_at_max_model_len(model, gpus):
    from vllm.exceptions import VLLMValidationError

    # one token below max_model_len leaves room for exactly one (encode_questions refuses anything longer)
    with engine(model) as be:
        out = be.generate([[5] * (MAX_MODEL_LEN - 1)], 2, 0.8, 1.0, 100, seeds=[0], ignore_eos=True)
        assert [(s["num_tokens"], s["finish_reason"]) for s in out[0]] == [(1, "length")] * 2
        # vLLM's own rule, the same as encode_questions'
        with pytest.raises(VLLMValidationError, match="longer than the maximum model length of 512"):
            be.generate([[5] * MAX_MODEL_LEN], 1, 0.8, 1.0, 100, seeds=[0])


@pytest.mark.parametrize("reason", ["abort", "error"])
def test_aborted_or_failed_request_is_an_error_not_a_sample(model, gpus, monkeypatch, reason):
    # a request vLLM aborted or failed has no reply; counting it as a truncated sample hides the failure
    from tpt.io import DataError

    monkeypatch.setenv("TPT_DOUBLE_FINISH", reason)
    with engine(model) as be:
        with pytest.raises(Exception) as failure:
            be.generate(prompts(model), 2, 0.8, 1.0, 16, seeds=question_seeds(0, range(len(prompts(model)))))
    assert isinstance(failure.value, DataError) and f"finished with {reason!r}" in str(failure.value)


# --- data parallel: independent engines, one per group of tensor_parallel_size GPUs ---

@pytest.mark.parametrize("devices,data_parallel,tensor_parallel,groups", [
    ("0,1,2,3", 2, 2, ["0,1", "2,3"]),    # two copies of a model split over two GPUs each
    ("0,1,2,3", 4, 1, ["0", "1", "2", "3"]),  # one copy per GPU
    ("4,5,6", 2, 1, ["4", "5"]),          # a restricted CUDA_VISIBLE_DEVICES is dealt out, spare GPUs stay idle
])
def test_gpu_groups(devices, data_parallel, tensor_parallel, groups):
    from tpt.backends.vllm_backend import gpu_groups

    assert gpu_groups(data_parallel, tensor_parallel, devices) == groups


def test_gpu_groups_refuses_too_few_gpus():
    from tpt.backends.vllm_backend import gpu_groups
    from tpt.io import DataError

    with pytest.raises(DataError, match="needs 4 GPUs, 3 visible"):
        gpu_groups(2, 2, "0,1,2")


def test_two_data_parallel_workers_give_what_one_engine_gives(model, gpus):
    # VLLM_DP_* offline data parallel refuses dense models; each worker is an independent engine
    p = prompts(model, 5)
    with engine(model, tensor_parallel_size=2) as be:
        one = be.generate(p, 2, 0.8, 1.0, 24, seeds=question_seeds(1, range(len(p))))
    with deadline(240), engine(model, tensor_parallel_size=2, data_parallel_size=2) as be:
        two = be.generate(p, 2, 0.8, 1.0, 24, seeds=question_seeds(1, range(len(p))))
        nothing = be.generate(p[:1], 2, 0.8, 1.0, 24, seeds=question_seeds(1, [0]))  # a worker with no question
        os.kill(be.workers[1].process.pid, signal.SIGKILL)  # a worker dying later is named too
        with pytest.raises(Exception, match=r"worker 1 \(CUDA_VISIBLE_DEVICES=2,3\) failed while sampling: "
                                            "it exited with exit code -9"):
            be.generate(p, 2, 0.8, 1.0, 24, seeds=question_seeds(1, range(len(p))))
    assert two == one and nothing == one[:1]
    workers = vllm_double.engines_log()[1:]
    assert sorted(w["cuda_visible_devices"] for w in workers) == ["0,1", "2,3"]
    assert all(w["pid"] != os.getpid() and w["vllm_dp_size"] is None for w in workers)


def test_worker_dying_at_start_is_one_line_naming_it(model, gpus, monkeypatch):
    # a worker that exits without a word (a crash in CUDA init) must not leave the parent waiting
    monkeypatch.setenv("TPT_DOUBLE_CRASH_GPU", "3")
    started = time.time()
    with deadline(240), pytest.raises(Exception) as failure:
        with engine(model, data_parallel_size=2, tensor_parallel_size=2):
            pass
    message = str(failure.value)
    assert "worker 1 (CUDA_VISIBLE_DEVICES=2,3)" in message and "exit code 7" in message, message
    assert "\n" not in message
    print(f"worker crash reported after {time.time() - started:.1f} s")


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

def test_worker_out_of_memory_at_start_stops_gen_synth_with_one_line(tmp_path, gpus):
    # worker 1's GPU is half taken by another job; its real error reaches the user, nothing is written
    vllm_double.occupy(1, 0.5)
    out = tmp_path / "run"
    started = time.time()
    proc = run_script([PYTHON, str(ROOT / "gen_synth.py"), "--backend", "vllm", "--math", str(GSM8K / "test.jsonl"),
                       "--limit", "4", "--num_samples", "2", "--max_tokens", "16", "--max_model_len", "512",
                       "--data_parallel_size", "2", "--output_dir", str(out)], script_env(gpus, "0,1"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: vLLM data-parallel worker 1 (CUDA_VISIBLE_DEVICES=1) failed to start: "
                           "ValueError: Free memory on device cuda:0 (40.00/80.00 GiB)"), proc.stderr[-3000:]
    assert sum(line.startswith("error:") for line in proc.stderr.splitlines()) == 1
    assert not (out / "e0.json").exists() and not (out / "manifest.json").exists()
    print(f"gen_synth.py exited {time.time() - started:.1f} s after its start")


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


def test_killed_gen_synth_resumes_to_what_an_unkilled_run_writes(tmp_path, gpus):
    # 70 questions x 64 samples = two calls of 64 and 6 questions; the run is killed once the first is journaled
    args = ["--backend", "vllm", "--math", str(GSM8K / "test.jsonl"), "--limit", "70", "--num_samples", "64",
            "--max_tokens", "8", "--max_model_len", "512"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**script_env(gpus, "0"), "TPT_DOUBLE_DELAY": "20"}
    proc = subprocess.Popen([PYTHON, str(ROOT / "gen_synth.py"), *args, "--output_dir", str(killed)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = killed / ".journal.jsonl"
    end = time.time() + 240
    while time.time() < end and proc.poll() is None:
        if journal.exists() and len(journal.read_bytes().splitlines()) >= 1 + 64:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "e0.json").exists()

    for folder in (killed, whole):
        done = run_script([PYTHON, str(ROOT / "gen_synth.py"), *args, "--output_dir", str(folder)],
                          script_env(gpus, "0"))
        assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["resumed_questions"] == 64 and manifest["sampled_questions"] == 6
    for j in (0, 31, 63):
        assert (killed / f"e{j}.json").read_text() == (whole / f"e{j}.json").read_text()
