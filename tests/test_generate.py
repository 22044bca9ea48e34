"""Think and Eval end to end: gen_synth.py / gen_eval.py as real subprocesses on the embedded model and real
GSM8K test questions (transformers backend on CPU). Short replies keep it cheap: budget ~4 minutes on 2 idle
cores (21 minutes when measured with the cores shared by four engineers' jobs, load average 8).
"""
import json
import os
import signal
import subprocess
import time

import pytest

from tpt.backends import Sampling, question_seeds

from tests.conftest import GSM8K, PYTHON, ROOT

pytestmark = pytest.mark.slow  # a model loaded in every test (pytest -m 'not slow' leaves them out)

SYNTH = [PYTHON, str(ROOT / "gen_synth.py")]
EVAL = [PYTHON, str(ROOT / "gen_eval.py")]
# 4 GSM8K test questions x 2 samples, 24 new tokens: enough to prove the plumbing, cheap on a CPU.
COMMON = ["--math", str(GSM8K / "test.jsonl"), "--limit", "4", "--max_tokens", "24", "--backend", "hf"]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, **kw)


def snapshot(folder):
    """(mtime_ns, bytes) of every file in folder: proof that a second run touched nothing."""
    return {name: (os.stat(folder / name).st_mtime_ns, (folder / name).read_bytes()) for name in os.listdir(folder)}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "run"
    proc = run(SYNTH + COMMON + ["--num_samples", "2", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_synth_writes_exactly_the_sample_files(synth_dir):
    out, proc = synth_dir
    assert sorted(os.listdir(out)) == ["e0.json", "e1.json", "manifest.json"]
    # the resolved prompt of the first question is shown at start-up
    assert "<|im_start|>user" in proc.stdout and "Janet" in proc.stdout
    questions = [json.loads(line) for line in (GSM8K / "test.jsonl").read_text().splitlines()[:4]]
    for name in ("e0.json", "e1.json"):
        records = json.loads((out / name).read_text())
        assert [r["qnum"] for r in records] == [0, 1, 2, 3]
        assert [r["question"] for r in records] == [q["question"] for q in questions]
        for r in records:
            assert r["solution"].strip(), r
            assert r["finish_reason"] in ("stop", "length")
            assert 1 <= r["num_tokens"] <= 24
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_questions"] == 4 and manifest["num_samples"] == 2
    assert manifest["generated_tokens"] == sum(
        r["num_tokens"] for name in ("e0.json", "e1.json") for r in json.loads((out / name).read_text()))
    assert manifest["tokens_per_second"] > 0
    assert manifest["model_path"].endswith("smollm2-135m") and manifest["backend"] == "hf"
    assert "questions 4 | samples 2" in proc.stdout
    assert_fingerprint_is_every_flag_but_where_outputs_go(manifest)


def assert_fingerprint_is_every_flag_but_where_outputs_go(manifest):
    # A run is the same run when every flag but these (and the questions) is: a flag a script adds is in its
    # fingerprint under its own name, and folders finished by earlier versions keep matching.
    # --fewshot_file counts by content, through the shots in questions_sha256; --batch_size (like
    # --gpu_memory_utilization, how many sequences decode together) changes speed and the products' last bits
    # only, not the seeds a sample draws from (docs/think.md#seeds-and-the-last-bits)
    not_fingerprinted = {"samples_dir", "questions", "gpu_memory_utilization", "skip_solved", "ray", "fewshot_file",
                         "batch_size"}
    flags = {k: v for k, v in manifest["args"].items() if k not in not_fingerprinted}
    assert {k: v for k, v in manifest["fingerprint"].items() if k != "questions_sha256"} == flags


def test_second_run_leaves_finished_files_alone_without_loading_the_model(synth_dir):
    out, _ = synth_dir
    before = snapshot(out)
    # Run the script in a fresh interpreter and check afterwards that torch was never imported.
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__'); "
            "assert 'torch' not in sys.modules, 'the model was loaded'")
    proc = run([PYTHON, "-c", code, str(ROOT / "gen_synth.py")] + COMMON + ["--num_samples", "2", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nothing to do" in proc.stdout
    # one line says so (runs/loop.sh leaves skipping to the stage and shows this line)
    assert [line for line in proc.stdout.splitlines() if line.startswith("skip: ")] == [
        f"skip: {out}: Think finished, same settings, inputs and code; nothing to do"]
    assert snapshot(out) == before


@pytest.mark.parametrize("change", [
    ["--seed", "1"],          # another seed: samples would differ
    ["--max_tokens", "32"],   # another reply limit
    ["--num_samples", "3"],   # another N: e2.json would sit beside e0/e1 from a different run
])
def test_different_arguments_on_a_finished_folder_are_refused(synth_dir, change):
    out, _ = synth_dir
    before = snapshot(out)
    # argparse keeps the last value of a repeated flag, so `change` overrides the finished run's value
    proc = run(SYNTH + COMMON + ["--num_samples", "2", "--output_dir", str(out)] + change)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "made with other settings, inputs or code" in lines[0] and change[0].lstrip("-") in lines[0], proc.stderr
    assert snapshot(out) == before


def test_killed_run_resumes_without_redoing_journaled_questions(tmp_path):
    out = tmp_path / "run"
    # One question per call (4 x batch_size 1 = 1 question x 4 samples), so the journal grows question by question.
    args = ["--math", str(GSM8K / "test.jsonl"), "--limit", "4", "--num_samples", "4", "--batch_size", "1",
            "--max_tokens", "8", "--backend", "hf", "--output_dir", str(out)]
    proc = subprocess.Popen(SYNTH + args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / ".journal.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_bytes().splitlines()) >= 2:  # header + 1 finished question
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = journal.read_bytes().split(b"\n")
    journaled = {}
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except ValueError:  # a line torn by the kill is redone
            continue
        journaled[rec["index"]] = rec
    assert 1 <= len(journaled) < 4
    assert not (out / "manifest.json").exists() and not (out / "e0.json").exists()

    done = run(SYNTH + args)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_questions"] == len(journaled)
    assert manifest["sampled_questions"] == 4 - len(journaled)
    assert not journal.exists()
    files = [json.loads((out / f"e{j}.json").read_text()) for j in range(4)]
    assert all(len(f) == 4 for f in files)
    for index, rec in journaled.items():  # journaled samples are the ones in the final files
        for j in range(4):
            assert files[j][index]["num_tokens"] == rec["samples"][j]["num_tokens"]
            assert files[j][index]["finish_reason"] == rec["samples"][j]["finish_reason"]


def test_unfinished_run_of_the_older_seed_scheme_is_refused_in_one_line(tmp_path):
    # An older TPT seeded each question by its place in a batch; its journal has no seed_scheme and cannot be
    # continued with samples seeded by question id.
    out = tmp_path / "run"
    out.mkdir()
    (out / ".journal.jsonl").write_text(json.dumps({"fingerprint": {}, "backend": "hf"}) + "\n")
    before = snapshot(out)
    proc = run(SYNTH + COMMON + ["--num_samples", "2", "--output_dir", str(out)])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "older TPT" in lines[0] and str(out) in lines[0], proc.stderr
    assert snapshot(out) == before


def test_eval_scores_under_both_folder_flags_and_greedy_is_deterministic(tmp_path):
    # --temperature 0 decodes greedily, so two seeds must give the same samples.
    greedy = ["--numsamples", "2", "--temperature", "0", "--max_tokens", "8"]
    a = run(EVAL + COMMON[:4] + ["--backend", "hf"] + greedy + ["--seed", "0", "--outputdir", str(tmp_path / "a")])
    b = run(EVAL + COMMON[:4] + ["--backend", "hf"] + greedy + ["--seed", "7", "--output_dir", str(tmp_path / "b")])
    for proc, folder in ((a, tmp_path / "a"), (b, tmp_path / "b")):
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads((folder / "pass_at_k_results.json").read_text())
        assert summary["num_questions"] == 4 and summary["num_samples"] == 2
        assert 0.0 <= summary["pass@1"] <= summary["pass@2"] <= 1.0
        assert (folder / "scored.json").exists()
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["scores"]["pass@1"] == summary["pass@1"]
        assert_fingerprint_is_every_flag_but_where_outputs_go(manifest)
        assert "pass@1" in proc.stdout and "strict pass@1" in proc.stdout and "tok/s" in proc.stdout
    for j in range(2):
        sa = [r["solution"] for r in json.loads((tmp_path / "a" / f"e{j}.json").read_text())]
        sb = [r["solution"] for r in json.loads((tmp_path / "b" / f"e{j}.json").read_text())]
        assert sa == sb
    # greedy: both samples of a question are the same text
    e0 = json.loads((tmp_path / "a" / "e0.json").read_text())
    e1 = json.loads((tmp_path / "a" / "e1.json").read_text())
    assert [r["solution"] for r in e0] == [r["solution"] for r in e1]


def test_bad_question_file_is_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"idt": 1, "question": "2+2?", "solution": "4"}]))  # no solnum
    proc = run(SYNTH + ["--math", str(bad), "--output_dir", str(tmp_path / "out"), "--backend", "hf"])
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "solnum" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_backend_selection():
    from tpt.backends import select_backend, vllm_status

    platform, reason = vllm_status()
    assert platform in ("cuda", "cpu", None) and reason
    # auto: vLLM on a CUDA GPU where it is installed, transformers everywhere else (a CPU engine is asked for)
    assert select_backend("auto") == ("vllm" if platform == "cuda" else "hf")
    assert select_backend("hf") == "hf"  # an explicit choice is kept
    if platform:  # a CUDA GPU or vLLM's CPU build
        assert select_backend("vllm") == "vllm"
    else:  # asking for vLLM where it cannot run says why instead of failing later
        with pytest.raises(ValueError, match="--backend vllm"):
            select_backend("vllm")
    with pytest.raises(ValueError, match="unknown backend"):
        select_backend("tgi")


# ---------------------------------------------------------------- the transformers backend itself
# The real embedded model in-process, float32, four short prompts: two GSM8K questions that run to their token
# budget and two one-digit sums the model answers and ends, so rows finish at different steps and are refilled.

def _prompts(tokenizer):
    from tpt.io import read_questions
    from tpt.prompt import encode_prompt

    gsm8k = [encode_prompt(tokenizer, q["question"]) for q in read_questions(GSM8K / "test.jsonl")[:2]]
    # with the plain template the model answers these in a few tokens and ends its turn
    short = [encode_prompt(tokenizer, f"What is {a}? Answer with the number only.", "plain") for a in ("7 + 1", "2 + 2")]
    return [short[0], *gsm8k, short[1]]


@pytest.fixture(scope="module")
def hf32():
    from tpt.backends import EngineConfig, load_backend
    from tpt.generate import load_tokenizer
    from tpt.models import resolve_model

    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path)
    backend = load_backend("hf", path, tokenizer, EngineConfig(dtype="float32", batch_size=3))
    return backend, tokenizer, _prompts(tokenizer)


def test_continuous_batching_greedy_equals_one_sequence_at_a_time(hf32):
    import torch

    backend, tokenizer, prompts = hf32
    out = backend.generate(prompts, Sampling(2, 0.0, 1.0, 20), seeds=question_seeds(0, range(4)))  # 8 sequences, 3 rows
    reasons = set()
    for prompt, samples in zip(prompts, out):
        # the reference: transformers' own generate, this prompt alone, greedy
        ref = backend.model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20,
                                     eos_token_id=backend.stop_ids, pad_token_id=backend.stop_ids[0])[0, len(prompt):]
        ref = ref.tolist()
        stop = next((i for i, t in enumerate(ref) if t in backend.stop_ids), None)
        expected = {"text": tokenizer.decode(ref[:stop], skip_special_tokens=True),
                    "finish_reason": "stop" if stop is not None else "length",
                    "num_tokens": stop + 1 if stop is not None else 20}
        assert samples == [expected, expected]
        reasons.add(expected["finish_reason"])
    assert reasons == {"stop", "length"}  # both ways of ending were exercised


SAME_QUESTION_ELSEWHERE = [
    # (batch size, question ids of the call): the samples of question q depend only on (seed, q, sample index)
    (1, [0, 1, 2, 3]),  # one row at a time
    (8, [0, 1, 2, 3]),  # every sequence in one batch
    (3, [3, 2, 1, 0]),  # the same questions in another order
    (3, [2]),  # question 2 alone in its call
    (3, [1, 3]),  # a call of two, as a resumed batch or another worker would get
]


@pytest.mark.parametrize("batch_size,qnums", SAME_QUESTION_ELSEWHERE)
def test_samples_depend_on_seed_question_and_index_only(hf32, batch_size, qnums):
    backend, _, prompts = hf32
    # 4 questions x 2 samples = 8 sequences through 3 rows
    first = dict(zip(range(4), backend.generate(prompts, Sampling(2, 0.8, 0.95, 8), seeds=question_seeds(5, range(4)))))
    backend.batch_size = batch_size
    try:
        out = backend.generate([prompts[q] for q in qnums], Sampling(2, 0.8, 0.95, 8), seeds=question_seeds(5, qnums))
    finally:
        backend.batch_size = 3
    assert dict(zip(qnums, out)) == {q: first[q] for q in qnums}


def test_another_seed_gives_other_samples(hf32):
    backend, _, prompts = hf32
    five = backend.generate(prompts, Sampling(2, 0.8, 0.95, 8), seeds=question_seeds(5, range(4)))
    assert backend.generate(prompts, Sampling(2, 0.8, 0.95, 8), seeds=question_seeds(6, range(4))) != five


def test_token_budget_and_ignore_eos(hf32):
    backend, _, prompts = hf32
    short = prompts[0]  # "What is 7 + 1? ...": the model answers and stops well within 40 tokens
    stopped = backend.generate([short], Sampling(1, 0.0, 1.0, 40), seeds=question_seeds(0, [0]))[0][0]
    assert stopped["finish_reason"] == "stop" and stopped["num_tokens"] < 40
    # ignore_eos: no end token, exactly max_tokens
    forced = backend.generate([short], Sampling(2, 0.8, 1.0, 40, ignore_eos=True), seeds=[0])[0]
    assert [(s["finish_reason"], s["num_tokens"]) for s in forced] == [("length", 40)] * 2
    old = backend.max_model_len
    try:
        # max_model_len leaves 3 tokens after the prompt: at most 3 new tokens, cut as 'length'
        backend.max_model_len = len(prompts[1]) + 3
        capped = backend.generate([prompts[1]], Sampling(1, 0.0, 1.0, 40), seeds=question_seeds(0, [1]))[0][0]
        assert (capped["finish_reason"], capped["num_tokens"]) == ("length", 3)
        # a prompt that fills max_model_len gets nothing, and its neighbours are unaffected
        backend.max_model_len = len(prompts[0])
        empty, other = backend.generate([prompts[1], prompts[0]], Sampling(1, 0.0, 1.0, 40),
                                        seeds=question_seeds(0, range(2)))
        assert empty[0] == {"text": "", "finish_reason": "length", "num_tokens": 0}
        assert other[0]["finish_reason"] in ("stop", "length") and other[0]["num_tokens"] >= 0
    finally:
        backend.max_model_len = old


STOP_CASES = [
    # (how the stop string is picked from the free reply): the reply ends there and is cut before it
    "first_space_word",  # a word the reply writes early: stopped well inside the budget
    "newline",  # "\n", as the harness's multi-line stops need
    "never_written",  # a string the reply never writes: the same reply, to its budget
]


@pytest.fixture(scope="module")
def free_reply(hf32):
    backend, _, prompts = hf32
    return backend.generate([prompts[1]], Sampling(1, 0.0, 1.0, 40), seeds=[0])[0][0]  # a GSM8K question: runs to 40


@pytest.mark.parametrize("case", STOP_CASES)
def test_stop_strings_end_the_reply_and_cut_it(hf32, free_reply, case):
    from tpt.backends import cut_at_stop

    backend, _, prompts = hf32
    free = free_reply
    assert free["finish_reason"] == "length"
    text = free["text"]
    stop = {"first_space_word": " " + text.split()[3] + " ", "newline": "\n", "never_written": "Question:"}[case]
    if case == "newline":
        assert "\n" in text.strip()  # the free reply writes one, so the case tests something
    stopped = backend.generate([prompts[1]], Sampling(1, 0.0, 1.0, 40, stop=[stop]), seeds=[0])[0][0]
    assert stopped["text"] == cut_at_stop(text, [stop])[0] == text.split(stop)[0]
    if case == "never_written":
        assert stopped == free
    else:
        assert stopped["finish_reason"] == "stop" and stopped["num_tokens"] < 40


def test_dtype_auto_follows_what_the_cpu_reports():
    import torch

    from tpt.device import auto_dtype, cpu_has_bf16, torch_dtype

    flags = set()
    if os.path.exists("/proc/cpuinfo"):  # the kernel's own list, independent of torch's probe
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if flags and ("avx2" in flags or "avx512f" in flags):  # an x86 CPU: the units, and torch allowed to use them
        allowed = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
        assert cpu_has_bf16() == (allowed and bool(flags & {"avx512_bf16", "amx_bf16"}))
    assert auto_dtype("cpu") == ("bfloat16" if cpu_has_bf16() else "float32")
    assert torch_dtype("auto", "cpu") == getattr(torch, auto_dtype("cpu"))
    assert torch_dtype("float32", "cpu") == torch.float32  # an explicit choice is kept
    with pytest.raises(ValueError, match="unknown dtype"):
        torch_dtype("int8", "cpu")


KERNEL_CAPS = [
    # (environment, --dtype auto on the CPU): kernels held below AVX-512 never get bf16, whatever the CPU has
    ({"ATEN_CPU_CAPABILITY": "avx2"}, "float32"),  # torch's own kernels at AVX2 (it then reports AVX2)
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "float32"),  # oneDNN, which runs bf16 matmuls, capped at AVX2
    ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, "float32"),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, None),  # a cap that keeps the bf16 instructions: as uncapped
]


@pytest.mark.parametrize("env,expected", KERNEL_CAPS)
def test_dtype_auto_respects_kernel_caps(env, expected):
    from tpt.device import auto_dtype

    code = "from tpt.device import auto_dtype; print(auto_dtype('cpu'))"
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (expected or auto_dtype("cpu"))


def test_shared_prompt_prefix_changes_no_sample(hf32):
    from tpt.backends import EngineConfig, load_backend

    backend, tokenizer, prompts = hf32
    assert backend.prompt_prefix == []  # no template given: every prompt prefilled whole
    shared = load_backend("hf", backend.model.name_or_path, tokenizer,
                          EngineConfig(dtype="float32", batch_size=3, template="tpt"))
    prefix = shared.prompt_prefix  # the tpt template's opening: the GSM8K prompts share it, "plain" ones less
    assert len(prefix) > 40 and prompts[1][: len(prefix)] == prefix
    seeds = question_seeds(2, range(len(prompts)))
    # greedy and sampled, the prompts that start with the prefix and those that share only the chat opening
    for temperature in (0.0, 0.8):
        assert shared.generate(prompts, Sampling(2, temperature, 1.0, 12), seeds=seeds) == \
            backend.generate(prompts, Sampling(2, temperature, 1.0, 12), seeds=seeds)
    # a prompt that is the prefix and one token more still runs its last token
    assert shared.generate([prefix + [prompts[1][len(prefix)]]], Sampling(1, 0.0, 1.0, 4), seeds=[0]) == \
        backend.generate([prefix + [prompts[1][len(prefix)]]], Sampling(1, 0.0, 1.0, 4), seeds=[0])


@pytest.fixture(scope="module")
def hf32_tpt(hf32):
    """The embedded model with the tpt template's opening prefilled once and reused (backend.prompt_prefix)."""
    from tpt.backends import EngineConfig, load_backend

    backend, tokenizer, _ = hf32
    return load_backend("hf", backend.model.name_or_path, tokenizer,
                        EngineConfig(dtype="float32", batch_size=3, template="tpt"))


PREFILL_COMPANY = [
    # (template, prompts prefilled together): prompt 4 is the tpt template's opening and one token more
    (None, [0, 1, 2, 3]),  # four whole prompts in one product
    (None, [3, 2, 1, 0]),  # the same four in another order
    (None, [1, 2]),  # the two long GSM8K prompts
    ("tpt", [1, 2, 4]),  # after the reused opening: two GSM8K rests and a one-token rest
    ("tpt", [4, 0]),  # a one-token rest beside a short prompt's: fewer rows than MIN_PRODUCT_ROWS, padded
]


@pytest.mark.parametrize("template,group", PREFILL_COMPANY)
def test_prompt_prefilled_beside_others_gets_its_cache_alone_bit_for_bit(hf32, hf32_tpt, template, group):
    import torch

    from tpt.backends.hf_backend import LlamaDecode

    backend = hf32_tpt if template else hf32[0]
    assert isinstance(backend.decode, LlamaDecode)  # the batched prefill, not transformers' forward
    prompts = hf32[2] + [hf32_tpt.prompt_prefix + [hf32[2][1][len(hf32_tpt.prompt_prefix)]]]
    with torch.inference_mode():
        alone = [backend._prefill([prompts[p]])[0] for p in group]
        together = backend._prefill([prompts[p] for p in group])
    for (logits, cache), (logits_alone, cache_alone) in zip(together, alone, strict=True):
        assert torch.equal(logits, logits_alone)
        assert all(torch.equal(a, b) for layer, layer_alone in zip(cache, cache_alone, strict=True)
                   for a, b in zip(layer, layer_alone, strict=True))


LIVE_ROWS = [
    # rows live in a decode step (the same prompt and token in each): row 0's logits must equal those at 40 rows
    1,  # the last sample of a run, alone
    2,  # two left
    3,  # the last count below which MKL's float32 x @ W^T rounds otherwise (AVX2)
    11,  # the last count below which weight @ x^T (the vocabulary projection) rounds otherwise
    16,  # MIN_PRODUCT_ROWS, unpadded
]


@pytest.mark.parametrize("live", LIVE_ROWS)
def test_decode_step_row_does_not_depend_on_how_many_rows_are_live(hf32, live):
    import torch

    from tpt.backends.hf_backend import SlotCache

    backend, _, prompts = hf32

    def first_row_logits(rows):
        _, prompt_cache = backend._prefill([prompts[1]])[0]
        cache = SlotCache(rows, len(prompts[1]) + 1, backend.dtype, backend.device)
        for row in range(rows):
            cache.load(row, prompt_cache)
        return cache.step(backend.decode, torch.full((rows,), 7))[0].clone()

    with torch.inference_mode():
        assert torch.equal(first_row_logits(live), first_row_logits(40))


BESIDE_LONGER_ROWS = [
    # (rows live, how many tokens longer than row 0 the other rows are): row 0's logits must equal those beside
    # rows as long as it (when the batch attended up to its longest row, any longer row changed row 0's bits)
    (2, 1),  # one row a token longer: the width one more
    (2, 40),  # one row 40 tokens longer
    (20, 100),  # 19 rows 100 tokens longer
    (150, 7),  # 149 rows 7 tokens longer
]


@pytest.mark.parametrize("live,longer", BESIDE_LONGER_ROWS)
def test_decode_step_row_does_not_depend_on_the_lengths_of_the_rows_beside_it(hf32, live, longer):
    import torch

    from tpt.backends.hf_backend import SlotCache

    backend, _, prompts = hf32
    with torch.inference_mode():
        _, prompt_cache = backend._prefill([prompts[1]])[0]
        n = len(prompts[1])

        def first_row_logits(others_length):
            cache = SlotCache(live, n + longer + 1, backend.dtype, backend.device)
            for row in range(live):
                cache.load(row, prompt_cache)
            cache.lengths[1:live] = [others_length] * (live - 1)  # their keys past n: zeros, as good as any
            return cache.step(backend.decode, torch.full((live,), 7))[0].clone()

        assert torch.equal(first_row_logits(n + longer), first_row_logits(n))


CPU_ATTENTION_CASES = [
    # (rows, lengths): the kernel against torch's sdpa over the same keys (the longest row's width, the rest masked)
    ([1], "one row of one position"),
    ([5, 77, 200], "rows of other lengths side by side"),
    ([64] * 20, "twenty rows as long"),
    ([1, 300, 2, 299], "the shortest beside the longest"),
]


@pytest.mark.parametrize("lengths,case", CPU_ATTENTION_CASES)
def test_cpu_attention_matches_torch_sdpa(lengths, case):
    import torch
    import torch.nn.functional as F

    from tpt.backends.cpu_attention import decode_attention

    generator = torch.Generator().manual_seed(len(lengths))
    rows, heads, kv_heads, dim, width = len(lengths), 9, 3, 64, max(lengths)
    query = torch.randn((rows, heads, dim), generator=generator)
    keys, values = (torch.randn((rows + 2, kv_heads, width + 5, dim), generator=generator) for _ in range(2))
    out = torch.full((rows, heads, dim), float("nan"))
    decode_attention(query, keys, values, torch.tensor(lengths), 0.125, out)
    hidden = torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None]
    mask = torch.zeros((rows, 1, 1, width)).masked_fill_(hidden[:, None, None], float("-inf"))
    expected = F.scaled_dot_product_attention(query[:, :, None], keys[:rows, :, :width], values[:rows, :, :width],
                                              attn_mask=mask, scale=0.125, enable_gqa=True)[:, :, 0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_bfloat16_samples_repeat_per_seed(hf32):
    from tpt.backends import EngineConfig, load_backend

    _, tokenizer, prompts = hf32
    backend = load_backend("hf", hf32[0].model.name_or_path, tokenizer, EngineConfig(dtype="bfloat16", batch_size=3))
    assert backend.dtype == __import__("torch").bfloat16
    a = backend.generate(prompts, Sampling(2, 0.8, 1.0, 8), seeds=question_seeds(3, range(len(prompts))))
    b = backend.generate(prompts, Sampling(2, 0.8, 1.0, 8), seeds=question_seeds(3, range(len(prompts))))
    assert a == b
