"""Think throughput on the embedded model, CPU: the transformers backend vs one sequence at a time vs others,
and (--demo_eval) the demo's own Eval against the CPU's matmul bound, today's backend against an older one.

    python bench/bench_think.py --demo_eval --questions 64 --kinds avx2,native --dtypes float32,bfloat16 \
        --before eb2536d --repeats 2 --json bench/results/demo_eval.json

--demo_eval: every run is a fresh process, and the runs interleave (kind, dtype, code) within each repeat, so the
load of other processes hits them alike. A run first measures the bound, float32 matmuls in that process: a
2048^3 product and the decode-shaped products of a 32-row step (576 -> 1536 and the 576 -> 49,152 vocabulary
projection); then it samples the demo's Eval (runs/demo.sh: the demo's test questions, --template, --num_samples
at temperature 0.7, up to --max_tokens new tokens, natural stops) on the first --questions questions. Kinds:
native (what torch picks here) and avx2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2: this CPU with AVX2 kernels forced, the float32 path of a CPU without AVX-512;
bfloat16 is skipped there, it has no bf16 units). Codes: after (this checkout's HFBackend, --batch_size rows, all
questions in one continuous batch as tpt.generate streams them) and before (tpt/backends/hf_backend.py of the git
revision --before, loaded from `git show`, run as gen_eval.py ran it then: --before_batch_size rows, calls of
4 x rows / num_samples questions, one seed per call). Reported per run: the bound, model tokens/s (prompt tokens +
generated tokens per second, a prompt counted once per question as it is prefilled once), the tokens the model
actually ran per second (the prompt's shared prefix, prefilled once per backend, not counted), generated
tokens/s, and the share of the bound: tokens run x 0.269 GFLOP (SmolLM2-135M's matmuls per token) / the 2048^3
rate.

    python bench/bench_think.py --questions 1 --num_samples 32 --max_tokens 128 --batch_size 32 \
        --dtypes float32,bfloat16 --modes hf_batched,hf_single,hf_static --repeats 3

Every mode gets the same GSM8K test questions, the same prompt token ids (tpt.prompt.encode_prompt with the tpt
template), sampling at temperature 0.8, and exactly max_tokens new tokens per sequence (the end token is
suppressed, unless --natural_stops lets sequences end where the model ends them, as in a real run). Modes:
  hf_batched   HFBackend (what gen_synth.py runs: continuous batching over a preallocated cache) with
               --batch_size rows, once per dtype in --dtypes
  hf_single    HFBackend with batch size 1 in float32: one sequence at a time (one sample per question: a
               sequence costs the same whichever sample it is, so the rate compares like with like)
  hf_static    transformers' model.generate on static left-padded batches of --batch_size (the backend before
               continuous batching), once per dtype in --dtypes
  hf_generate_batch  transformers' continuous batching (model.generate_batch), float32, same sequences
  llamacpp     llama-cpp-python on the same GGUF file the embedded model is converted from, one sequence at a
               time (its KV cache reuses the shared prompt prefix between samples, as llama.cpp does)
Reports the median tokens/s of --repeats runs per mode (modes interleave within each repeat), ratios to
hf_single and llamacpp, the CPU's bf16 support as tpt.device sees it, and the peak resident memory of a separate
process running hf_batched alone in the first dtype. llama-cpp-python is a bench-only dependency:
pip install -r bench/requirements.txt.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
GSM8K_TEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "gsm8k", "test.jsonl")
MODES = ("hf_batched", "hf_single", "hf_static", "hf_generate_batch", "llamacpp")
GFLOP_PER_TOKEN = 0.269  # SmolLM2-135M: 2 x its matmul weights (30 layers + the 576 x 49,152 vocabulary projection)
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
KINDS = {"native": {}, "avx2": AVX2_ENV}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--num_samples", type=int, default=4)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--dtypes", default="float32,bfloat16", help="hf_batched / hf_static dtypes, comma-separated")
    parser.add_argument("--natural_stops", action="store_true", help="let sequences end at the end token")
    parser.add_argument("--threads", type=int, default=0, help="torch / llama.cpp threads (0 = their default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--math", default=GSM8K_TEST)
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--peak_memory_only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--demo_eval", action="store_true", help="the demo's Eval against the matmul bound (above)")
    parser.add_argument("--kinds", default="native,avx2", help="--demo_eval: " + ", ".join(KINDS))
    parser.add_argument("--before", default="", help="--demo_eval: also run hf_backend.py of this git revision")
    parser.add_argument("--before_batch_size", type=int, default=32, help="--demo_eval: rows of the --before code")
    parser.add_argument("--template", default="plain", help="--demo_eval: the prompt template (the demo's)")
    parser.add_argument("--demo_run", default="", help=argparse.SUPPRESS)  # one --demo_eval run: KIND,DTYPE,CODE
    return parser


def matmul_bound(seconds=1.5):
    """float32 GFLOP/s of the products that bound a step: {shape: median GFLOP/s}."""
    import torch

    shapes = {"2048x2048x2048": (2048, 2048, 2048), "32x576x1536": (32, 576, 1536), "32x576x49152": (32, 576, 49152)}
    out = {}
    with torch.inference_mode():
        for name, (m, k, n) in shapes.items():
            a, b = torch.randn(m, k), torch.randn(n, k)
            torch.nn.functional.linear(a, b)
            rates, t_end = [], time.perf_counter() + seconds
            while time.perf_counter() < t_end or len(rates) < 3:
                t0 = time.perf_counter()
                torch.nn.functional.linear(a, b)
                rates.append(2 * m * k * n / (time.perf_counter() - t0) / 1e9)
            out[name] = statistics.median(rates)
    return out


def load_before_backend(rev):
    """HFBackend as tpt/backends/hf_backend.py was at git revision `rev`."""
    import importlib.util
    import tempfile

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    text = subprocess.run(["git", "-C", root, "show", f"{rev}:tpt/backends/hf_backend.py"], capture_output=True,
                          text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(), f"hf_backend_{rev}.py")
    with open(path, "w") as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(f"hf_backend_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HFBackend


def demo_eval_run(args):
    """One --demo_eval run in this process: the bound, then the demo's Eval on the first --questions questions."""
    import torch

    from tpt.backends import EngineConfig, Sampling, question_seeds
    from tpt.backends.hf_backend import HFBackend, shared_prefix_length
    from tpt.data import DEMO_TASK, DEMO_TASK_CONFIG, make_gym_split
    from tpt.generate import load_tokenizer, plan_batches
    from tpt.models import load_generation_config, resolve_model, stop_token_ids
    from tpt.prompt import encode_prompt, shared_prompt_ids

    kind, dtype, code = args.demo_run.split(",")
    bound = matmul_bound()
    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path)
    test = make_gym_split(DEMO_TASK, 400, 200, 1, 1_000_000, DEMO_TASK_CONFIG)[1][: args.questions]
    prompts = [encode_prompt(tokenizer, q["question"], args.template) for q in test]
    stop_ids = stop_token_ids(tokenizer, load_generation_config(path))
    prefix = shared_prompt_ids(tokenizer, args.template)
    n, temperature = args.num_samples, 0.7
    if code == "after":
        backend = HFBackend(path, tokenizer, stop_ids, EngineConfig(dtype=dtype, max_model_len=1024,
                                                                    batch_size=args.batch_size, template=args.template))
        backend.generate(prompts[:1], Sampling(1, temperature, 1.0, 4), [0])  # warm-up (and the prefix's prefill)
        t0 = time.time()
        results = backend.generate(prompts, Sampling(n, temperature, 1.0, args.max_tokens),
                                   question_seeds(0, [q["idt"] for q in test]))
    else:  # the backend of the day: engine settings as keywords, one seed per call, calls of 4 x rows
        backend = load_before_backend(args.before)(path, tokenizer, stop_ids, dtype=dtype, max_model_len=1024,
                                                   batch_size=args.before_batch_size)
        backend.generate(prompts[:1], 1, temperature, 1.0, 4, 0)
        t0, results = time.time(), []
        for b, batch in enumerate(plan_batches(prompts, max(1, 4 * args.before_batch_size // n))):
            results += backend.generate([prompts[i] for i in batch], n, temperature, 1.0, args.max_tokens, b)
    seconds = time.time() - t0
    generated = sum(s["num_tokens"] for r in results for s in r)

    prompt_tokens = sum(len(p) for p in prompts)
    run_tokens = prompt_tokens - (sum(shared_prefix_length(p, prefix) for p in prompts) if code == "after" else 0)
    top = bound["2048x2048x2048"]
    return {
        "kind": kind, "dtype": dtype, "code": code, "capability": torch.backends.cpu.get_cpu_capability(),
        "bound_gflops": bound, "bound_model_tokens_per_s": top / GFLOP_PER_TOKEN,
        "questions": len(prompts), "samples": len(prompts) * n, "prompt_tokens": prompt_tokens,
        "prompt_tokens_run": run_tokens, "generated_tokens": generated, "seconds": seconds,
        "model_tokens_per_s": (prompt_tokens + generated) / seconds,
        "run_tokens_per_s": (run_tokens + generated) / seconds,
        "generated_tokens_per_s": generated / seconds,
        "share_of_bound": (run_tokens + generated) / seconds * GFLOP_PER_TOKEN / top,
    }


def demo_eval(args):
    """--demo_eval: fresh-process runs, interleaved within each repeat; medians per (kind, dtype, code)."""
    combos = []
    for kind in [k for k in args.kinds.split(",") if k]:
        for dtype in [d for d in args.dtypes.split(",") if d]:
            if kind == "avx2" and dtype == "bfloat16":
                continue  # no bf16 units on an AVX2-only CPU: --dtype auto is float32 there
            combos += [(kind, dtype, code) for code in (["after", "before"] if args.before else ["after"])]
    load_at_start, runs = os.getloadavg(), {c: [] for c in combos}
    for r in range(args.repeats):
        for combo in combos:
            cmd = [sys.executable, os.path.abspath(__file__), "--demo_run", ",".join(combo), "--questions",
                   str(args.questions), "--batch_size", str(args.batch_size), "--max_tokens", str(args.max_tokens),
                   "--num_samples", str(args.num_samples), "--template", args.template, "--before", args.before,
                   "--before_batch_size", str(args.before_batch_size)] + (["--threads", str(args.threads)] if args.threads else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, **KINDS[combo[0]]})
            if out.returncode:
                raise SystemExit(f"error: run {combo} failed:\n{out.stderr[-3000:]}")
            runs[combo].append(json.loads(out.stdout.strip().splitlines()[-1]))
            run = runs[combo][-1]
            print(f"repeat {r + 1} {' '.join(combo)}: bound {run['bound_gflops']['2048x2048x2048']:.1f} GFLOP/s, "
                  f"model {run['model_tokens_per_s']:.1f} tok/s, run {run['run_tokens_per_s']:.1f}, generated "
                  f"{run['generated_tokens_per_s']:.1f}, share {run['share_of_bound']:.2f}", flush=True)
    keys = ("model_tokens_per_s", "run_tokens_per_s", "generated_tokens_per_s", "share_of_bound",
            "bound_model_tokens_per_s")
    medians = {" ".join(c): {k: statistics.median(run[k] for run in v) for k in keys} | {
        "bound_gflops": {s: statistics.median(run["bound_gflops"][s] for run in v) for s in v[0]["bound_gflops"]},
        "capability": v[0]["capability"]} for c, v in runs.items()}
    ratios = {}
    for kind, dtype, code in combos:  # after / before, each repeat's pair, then the median
        if code == "before":
            pairs = list(zip(runs[(kind, dtype, "after")], runs[(kind, dtype, "before")]))
            ratios[f"{kind} {dtype}"] = {k: statistics.median(a[k] / b[k] for a, b in pairs)
                                         for k in ("model_tokens_per_s", "generated_tokens_per_s")}
            ratios[f"{kind} {dtype}"]["seconds_before_over_after"] = statistics.median(
                b["seconds"] / a["seconds"] for a, b in pairs)
    from tpt.device import cpu_has_bf16

    result = {"settings": {k: v for k, v in vars(args).items() if k not in ("json", "peak_memory_only", "demo_run")},
              "cpu_count": os.cpu_count(), "cpu_has_bf16": cpu_has_bf16(), "load_average_at_start": load_at_start,
              "load_average_at_end": os.getloadavg(), "medians": medians, "after_over_before": ratios,
              "runs": {" ".join(c): v for c, v in runs.items()}}
    print(json.dumps({k: result[k] for k in ("load_average_at_start", "load_average_at_end", "medians",
                                             "after_over_before")}, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


def load_prompts(args):
    from tpt.generate import load_tokenizer
    from tpt.io import read_questions
    from tpt.models import resolve_model
    from tpt.prompt import encode_prompt

    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path)
    questions = read_questions(args.math)[: args.questions]
    return path, tokenizer, [encode_prompt(tokenizer, q["question"]) for q in questions]


def hf_rate(path, tokenizer, prompts, num_samples, batch_size, max_tokens, dtype, ignore_eos=True):
    from tpt.backends import EngineConfig, Sampling, load_backend, question_seeds

    backend = load_backend("hf", path, tokenizer, EngineConfig(dtype=dtype, batch_size=batch_size))
    backend.generate(prompts[:1], Sampling(1, 0.8, 1.0, 4), seeds=[0])  # warm-up
    t0 = time.time()
    results = backend.generate(prompts, Sampling(num_samples, 0.8, 1.0, max_tokens, ignore_eos=ignore_eos),
                               question_seeds(1, range(len(prompts))))
    seconds = time.time() - t0
    return sum(s["num_tokens"] for r in results for s in r) / seconds


def static_rate(path, prompts, num_samples, batch_size, max_tokens, dtype, ignore_eos=True):
    """model.generate on static batches of batch_size left-padded sequences (each batch runs to its longest)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    rows = [p for p in prompts for _ in range(num_samples)]
    tokens, t0 = 0, time.time()
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[2] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=0.8, top_p=1.0,
                                 top_k=0, max_new_tokens=max_tokens, eos_token_id=2, pad_token_id=2,
                                 **({"min_new_tokens": max_tokens} if ignore_eos else {}))
        for row in out[:, width:].tolist():
            tokens += row.index(2) + 1 if 2 in row else len(row)
    return tokens / (time.time() - t0)


def generate_batch_rate(path, prompts, num_samples, max_tokens):
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    config = GenerationConfig(max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=True,
                              temperature=0.8, top_k=0, top_p=1.0, eos_token_id=2, pad_token_id=2)
    inputs = [p for p in prompts for _ in range(num_samples)]
    t0 = time.time()
    with torch.no_grad():  # its worker thread writes into its own tensors: inference_mode breaks that
        outputs = model.generate_batch(inputs=inputs, generation_config=config)
    seconds = time.time() - t0
    tokens = sum(len(o.generated_tokens) for o in outputs.values())
    if tokens != len(inputs) * max_tokens:
        raise RuntimeError(f"generate_batch returned {tokens} tokens, expected {len(inputs) * max_tokens}")
    return tokens / seconds


def llamacpp_rate(prompts, num_samples, max_tokens, threads):
    from llama_cpp import Llama

    from tpt.models import embedded_gguf

    folder, filename = embedded_gguf("smollm2-135m")
    llm = Llama(model_path=os.path.join(folder, filename), n_ctx=2048, n_batch=512, seed=1, verbose=False,
                logits_all=False, **({"n_threads": threads} if threads else {}))
    eos = llm.token_eos()
    llm.create_completion(prompts[0], max_tokens=4)  # warm-up
    tokens, t0 = 0, time.time()
    for prompt in prompts:
        for _ in range(num_samples):
            out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.8, top_p=1.0, top_k=0,
                                        min_p=0.0, repeat_penalty=1.0, logit_bias={eos: -1e9})
            tokens += out["usage"]["completion_tokens"]
    return tokens / (time.time() - t0)


def peak_memory_mib(args):
    """Peak RSS of a fresh process running the batched mode once (the figure a user's machine needs)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--peak_memory_only", "--questions", str(args.questions),
           "--num_samples", str(args.num_samples), "--max_tokens", str(args.max_tokens),
           "--batch_size", str(args.batch_size), "--threads", str(args.threads), "--math", args.math,
           "--dtypes", args.dtypes] + (["--natural_stops"] if args.natural_stops else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    args = build_parser().parse_args()
    load_at_start = os.getloadavg()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.demo_run:
        print(json.dumps(demo_eval_run(args)))
        return
    if args.demo_eval:
        demo_eval(args)
        return
    path, tokenizer, prompts = load_prompts(args)
    dtypes = [d for d in args.dtypes.split(",") if d]
    ignore_eos = not args.natural_stops
    if args.peak_memory_only:
        hf_rate(path, tokenizer, prompts, args.num_samples, args.batch_size, args.max_tokens, dtypes[0], ignore_eos)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    runners = {}
    for mode in [m for m in args.modes.split(",") if m]:
        if mode == "hf_batched":
            for d in dtypes:
                runners[f"hf_batched {d}"] = lambda d=d: hf_rate(path, tokenizer, prompts, args.num_samples,
                                                                 args.batch_size, args.max_tokens, d, ignore_eos)
        elif mode == "hf_static":
            for d in dtypes:
                runners[f"hf_static {d}"] = lambda d=d: static_rate(path, prompts, args.num_samples, args.batch_size,
                                                                    args.max_tokens, d, ignore_eos)
        elif mode == "hf_single":
            runners["hf_single float32"] = lambda: hf_rate(path, tokenizer, prompts, 1, 1, args.max_tokens, "float32",
                                                           ignore_eos)
        elif mode == "hf_generate_batch":
            runners[mode] = lambda: generate_batch_rate(path, prompts, args.num_samples, args.max_tokens)
        elif mode == "llamacpp":
            runners[mode] = lambda: llamacpp_rate(prompts, args.num_samples, args.max_tokens, args.threads)
        else:
            raise SystemExit(f"error: unknown mode {mode!r}; choose from {', '.join(MODES)}")
    rates = {m: [] for m in runners}
    # Modes interleave within each repeat, so load from other processes hits them alike.
    for r in range(args.repeats):
        for mode, runner in runners.items():
            try:
                rates[mode].append(runner())
            except Exception as e:  # a missing optional dependency or an API change: report, keep going
                rates[mode].append(None)
                print(f"{mode}: failed: {type(e).__name__}: {e}", flush=True)
            print(f"repeat {r + 1} {mode}: {rates[mode][-1]}", flush=True)
    medians = {m: statistics.median(v) for m, v in rates.items() if v and all(x is not None for x in v)}
    from tpt.device import auto_dtype, cpu_has_bf16

    result = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "peak_memory_only")},
        "cpu_count": os.cpu_count(),
        "cpu_has_bf16": cpu_has_bf16(),
        "dtype_auto_on_cpu": auto_dtype("cpu"),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "rates": rates,
        "median_tokens_per_second": medians,
    }
    for base in ("hf_single float32", "llamacpp"):  # the yardsticks: x one-at-a-time, x llama.cpp
        if base in medians:
            result["over_" + base.replace(" ", "_")] = {m: v / medians[base] for m, v in medians.items() if m != base}
    if any(m.startswith("hf_batched") for m in medians):
        result[f"peak_rss_mib_hf_batched_{dtypes[0]}"] = peak_memory_mib(args)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
