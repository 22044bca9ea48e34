"""The vLLM backend on the real vLLM engine: vLLM's CPU build (`vllm-cpu`) with the embedded model, driven through
tpt.backends.load_backend, the real gen_synth.py / gen_eval.py and runs/loop.sh. vLLM's own scheduler, KV-cache
manager, sampler, detokenizer, parallel sampling, prefix caching and engine processes do the work; nothing is
replaced.

Runs under `make test-vllm` (.venv-vllm-cpu; TPT_REQUIRE_VLLM=1 turns a missing vllm into a failure, so nothing is
skipped there); under `make test` (no vllm in .venv) the module is skipped with the reason. One engine for the
module (float32, enforce_eager: ~45 s to start); each script run starts one of its own beside it, so the KV cache
of every engine is kept small (VLLM_CPU_KVCACHE_SPACE, GiB). Budget: ~8 minutes on 2 cores.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from tpt.backends import Sampling, question_seeds

from tests.conftest import GSM8K, PYTHON, ROOT

if os.environ.get("TPT_REQUIRE_VLLM"):
    import vllm  # noqa: F401  (make test-vllm: a missing vllm is a failure, not a skip)
else:
    pytest.importorskip("vllm", reason="vllm is not installed (make test-vllm installs it into .venv-vllm-cpu)")

pytestmark = pytest.mark.slow  # a real engine in every test (pytest -m 'not slow' leaves them out)

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB per engine: the module's and a script's fit together
MAX_MODEL_LEN = 512
ENGINE_FLAGS = ["--backend", "vllm", "--dtype", "float32", "--enforce_eager", "--max_model_len", str(MAX_MODEL_LEN)]


@pytest.fixture(scope="module")
def model():
    from tpt.generate import load_tokenizer
    from tpt.models import resolve_model

    path = resolve_model("smollm2-135m")
    return path, load_tokenizer(path)


@pytest.fixture(scope="module")
def engine(model):
    from tpt.backends import EngineConfig, load_backend, vllm_status

    if vllm_status()[0] != "cpu":
        pytest.fail(f"these tests drive vLLM's CPU build; here: {vllm_status()}")
    path, tokenizer = model
    backend = load_backend("vllm", path, tokenizer, EngineConfig(dtype="float32", max_model_len=MAX_MODEL_LEN,
                                                                 enforce_eager=True, seed=0))
    yield backend
    backend.close()


def questions(k):
    from tpt.io import read_questions

    return read_questions(GSM8K / "test.jsonl")[:k]


def gsm8k_prompts(model, k):
    from tpt.prompt import encode_prompt

    return [encode_prompt(model[1], q["question"]) for q in questions(k)]


def seeds_of(seed, k):
    return question_seeds(seed, [q["idt"] for q in questions(k)])


# --- selection: an explicit vllm runs wherever vLLM has a platform ---

def test_explicit_vllm_runs_on_the_cpu_build_and_auto_keeps_transformers():
    from tpt.backends import select_backend, vllm_status

    assert vllm_status()[0] == "cpu"
    assert select_backend("vllm") == "vllm"
    assert select_backend("auto") == "hf"  # on a CPU an engine's start-up (tens of seconds) is asked for by name


# --- the engine through load_backend ---

def test_greedy_matches_transformers_token_for_token(model, engine):
    from tpt.backends import EngineConfig, load_backend

    prompts = gsm8k_prompts(model, 3)
    # three greedy samples: vLLM refuses n > 1 at temperature 0, the adapter decodes one and copies it
    ours = engine.generate(prompts, Sampling(3, 0.0, 1.0, 32), seeds=seeds_of(0, 3))
    hf = load_backend("hf", model[0], model[1], EngineConfig(dtype="float32", batch_size=3))
    theirs = hf.generate(prompts, Sampling(1, 0.0, 1.0, 32), seeds=seeds_of(0, 3))
    for mine, reference in zip(ours, theirs):
        assert mine == [reference[0]] * 3


@pytest.fixture(scope="module")
def sixteen_by_four(model, engine):
    """16 GSM8K prompts x n=4 x 128 tokens, seeded: 64 requests whose prompt tokens (~11k) are more than one
    step's budget on a CPU (4096), the size at which a chunked prefill rewound a CPU generator and killed the
    engine."""
    prompts = gsm8k_prompts(model, 16)
    assert 4 * sum(len(p) for p in prompts) > 4096
    return prompts, engine.generate(prompts, Sampling(4, 0.8, 1.0, 128), seeds=seeds_of(3, 16))


@pytest.mark.parametrize("picked", [
    [5],                # a question alone
    [9, 2, 14],         # a few, in another order, beside other questions than before
    [15, 0, 7, 8, 1],   # others at both ends of the first call
])
def test_seeded_samples_are_the_same_whichever_call_a_question_lands_in(engine, sixteen_by_four, picked):
    prompts, whole = sixteen_by_four
    seeds = seeds_of(3, 16)
    again = engine.generate([prompts[i] for i in picked], Sampling(4, 0.8, 1.0, 128), seeds=[seeds[i] for i in picked])
    assert again == [whole[i] for i in picked]


def test_sample_s_draws_from_the_question_seed_plus_s(engine, sixteen_by_four):
    # vLLM's parallel sampling: child s of a request seeded S is the lone request seeded S + s
    prompts, whole = sixteen_by_four
    seed = seeds_of(3, 16)[4]
    alone = engine.generate([prompts[4]] * 4, Sampling(1, 0.8, 1.0, 128), seeds=[seed + s for s in range(4)])
    assert [samples[0] for samples in alone] == whole[4]
    assert len({s["text"] for s in whole[4]}) == 4  # the children drew different samples
    other = engine.generate([prompts[4]], Sampling(4, 0.8, 1.0, 128), seeds=seeds_of(4, 16)[4:5])
    assert other[0] != whole[4]  # another run seed, other samples


def short_prompts(model):
    from tpt.prompt import encode_prompt

    # with the plain template the model answers these in a few tokens and ends its turn
    return [encode_prompt(model[1], f"What is {a}? Answer with the number only.", "plain") for a in ("7 + 1", "2 + 2")]


def test_ignore_eos_runs_every_reply_to_max_tokens_and_stop_tokens_stay_out_of_the_text(model, engine):
    from tpt.models import load_generation_config, stop_token_ids

    short = short_prompts(model)
    stopped = engine.generate(short, Sampling(2, 0.0, 1.0, 40), seeds=[0, 1])  # greedy, the model ends both answers
    full = [engine.generate(short + gsm8k_prompts(model, 1), Sampling(2, temperature, 1.0, 40, ignore_eos=True),
                            seeds=[0, 1, 2])
            for temperature in (0.0, 0.8)]
    assert [s["finish_reason"] for samples in stopped for s in samples] == ["stop"] * 4
    assert all(s["num_tokens"] == 40 and s["finish_reason"] == "length"
               for run in full for samples in run for s in samples)
    stop_texts = [model[1].decode([i]) for i in stop_token_ids(model[1], load_generation_config(model[0]))]
    assert stop_texts
    for samples in stopped + full[0] + full[1]:
        for s in samples:
            assert not any(t in s["text"] for t in stop_texts), s["text"]


def test_prompt_at_max_model_len(model, engine):
    from tpt.io import DataError

    question = gsm8k_prompts(model, 1)[0]
    at_limit = (question * 4)[: MAX_MODEL_LEN - 1]  # one token below max_model_len leaves room for one
    out = engine.generate([at_limit], Sampling(2, 0.8, 1.0, 100, ignore_eos=True), seeds=[0])
    assert [(s["num_tokens"], s["finish_reason"]) for s in out[0]] == [(1, "length")] * 2
    # one token more is vLLM's own refusal (encode_questions refuses such a question before any engine starts)
    with pytest.raises(DataError, match=r"vLLM engine \(CPU\) failed while sampling: .*maximum model length of 512"):
        engine.generate([(question * 4)[:MAX_MODEL_LEN]], Sampling(1, 0.8, 1.0, 100), seeds=[0])
    again = engine.generate([at_limit], Sampling(2, 0.8, 1.0, 100, ignore_eos=True), seeds=[0])
    assert again == out  # the engine lives on after a refused prompt


# --- the scripts on the real engine: killed mid-run, resumed to what the module's engine samples ---

def journaled(folder):
    journal = folder / ".journal.jsonl"
    return len(journal.read_bytes().splitlines()) - 1 if journal.exists() else 0


def start(script, args):
    return subprocess.Popen([PYTHON, str(ROOT / script), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_journal(proc, folder, questions_done, timeout=400):
    end = time.time() + timeout
    while time.time() < end:
        if journaled(folder) >= questions_done:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"nothing journaled in {timeout} s")


def engine_core(pid):
    """vLLM's engine-core process among the script's children (the one that holds the scheduler)."""
    import psutil

    for child in psutil.Process(pid).children(recursive=True):
        if any("EngineCor" in part for part in [child.name(), *child.cmdline()]):  # comm is cut at 15
            return child
    pytest.fail(f"no EngineCore process under {pid}")


def assert_files_are_the_module_engines(folder, engine, model, num_samples, temperature, seed):
    from tpt.prompt import clean_response

    expected = engine.generate(gsm8k_prompts(model, 8), Sampling(num_samples, temperature, 1.0, 8),
                               seeds=seeds_of(seed, 8))
    for j in (0, num_samples // 2, num_samples - 1):
        records = json.loads((folder / f"e{j}.json").read_text())
        assert [r["qnum"] for r in records] == [q["idt"] for q in questions(8)]
        assert [r["solution"] for r in records] == [clean_response(samples[j]["text"]) for samples in expected]
        assert [r["num_tokens"] for r in records] == [samples[j]["num_tokens"] for samples in expected]


# 8 questions x 64 samples: on the CPU build a call is 256 sequences (4 questions), so two calls, killed between.
SCRIPT_ARGS = ["--questions", str(GSM8K / "test.jsonl"), "--limit", "8", "--max_tokens", "8", *ENGINE_FLAGS]


def test_gen_synth_killed_mid_run_resumes_to_the_same_files(tmp_path, model, engine):
    out = tmp_path / "synth"
    args = SCRIPT_ARGS + ["--num_samples", "64", "--seed", "5", "--output_dir", str(out)]
    proc = start("gen_synth.py", args)
    wait_for_journal(proc, out, 4)
    os.killpg(proc.pid, signal.SIGKILL)  # the script and its engine processes, as a lost node
    proc.communicate()
    assert journaled(out) == 4 and not (out / "e0.json").exists()

    done = subprocess.run([PYTHON, str(ROOT / "gen_synth.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "vllm" and (manifest["resumed_questions"], manifest["sampled_questions"]) == (4, 4)
    assert_files_are_the_module_engines(out, engine, model, 64, 0.8, 5)


def test_gen_eval_whose_engine_dies_says_one_line_then_resumes_to_the_same_files(tmp_path, model, engine):
    out = tmp_path / "eval"
    args = SCRIPT_ARGS + ["--num_samples", "64", "--seed", "6", "--output_dir", str(out)]
    proc = start("gen_eval.py", args)
    wait_for_journal(proc, out, 4)
    engine_core(proc.pid).kill()  # SIGKILL of vLLM's engine process only: the script must notice and say so
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]  # after it, only vLLM's leaked-shared-memory warning at exit
    assert errors[0].startswith("error: vLLM engine (CPU) failed while sampling: EngineDeadError"), errors[0]
    assert journaled(out) == 4 and not (out / "e0.json").exists() and not (out / "manifest.json").exists()

    done = subprocess.run([PYTHON, str(ROOT / "gen_eval.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "vllm" and manifest["resumed_questions"] == 4
    assert_files_are_the_module_engines(out, engine, model, 64, 0.7, 6)


def test_two_data_parallel_engines_on_ray_write_what_one_engine_samples(tmp_path, model, engine):
    # Two replicas, each a Ray actor holding its own real CPU engine, on a local cluster the script starts; the
    # run's two calls (4 questions x 64 samples each) go one to each. Every question's samples come from its seed,
    # so the e-files equal the module engine's (one engine) whichever replica drew a question.
    out = tmp_path / "ray"
    args = SCRIPT_ARGS + ["--num_samples", "64", "--seed", "7", "--output_dir", str(out), "--ray", "local",
                          "--data_parallel_size", "2"]
    done = subprocess.run([PYTHON, str(ROOT / "gen_synth.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "vllm" and manifest["args"]["data_parallel_size"] == 2
    assert "ray_replica_resources" in manifest
    assert "replica 0: " in done.stdout and "replica 1: " in done.stdout, done.stdout[-3000:]  # both sampled
    assert_files_are_the_module_engines(out, engine, model, 64, 0.8, 7)


# --- one tiny round of the loop with BACKEND=vllm ---

def test_loop_round_on_the_vllm_backend(tmp_path):
    from tests.test_loop import MARKERS, SUMS, _env, _questions, _write

    train = _write(tmp_path / "train.json", _questions(SUMS[:8], 0))
    test = _write(tmp_path / "test.json", _questions(SUMS[8:], 100))
    out = tmp_path / "out"
    env = _env(tmp_path, train, test, out) | {"BACKEND": "vllm", "GEN_ARGS": "--enforce_eager --dtype float32"}
    done = subprocess.run(["bash", str(ROOT / "runs" / "loop.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for marker in MARKERS:
        assert (out / marker).is_file(), marker
    for stage in ("round0/eval", "round1/think", "round1/eval"):
        assert json.loads((out / stage / "manifest.json").read_text())["backend"] == "vllm", stage
    assert json.loads((out / "round1" / "data" / "train.json").read_text()), "the round kept no trace"
