"""Think throughput on the embedded model, CPU: batched transformers vs one sequence at a time vs llama.cpp.

    python bench/bench_think.py --questions 8 --num_samples 4 --max_tokens 64 --repeats 3

Every mode gets the same GSM8K test questions, the same prompt token ids (tpt.prompt.encode_prompt with the tpt
template), sampling at temperature 0.8, and exactly max_tokens new tokens per sequence (the end token is
suppressed) so lengths match. Modes:
  hf_batched   HFBackend (what gen_synth.py runs) with --batch_size sequences per forward pass
  hf_single    HFBackend with batch size 1: one sequence at a time (one sample per question: a sequence
               costs the same whichever sample it is, so the rate compares like with like)
  hf_generate_batch  transformers' continuous batching (model.generate_batch), same sequences as hf_batched
  llamacpp     llama-cpp-python on the same GGUF file the embedded model is converted from, one sequence at a
               time (its KV cache reuses the shared prompt prefix between samples, as llama.cpp does)
Reports the median tokens/s of --repeats runs per mode, ratios to hf_batched, and the peak resident memory
of a separate process running hf_batched alone. llama-cpp-python is a bench-only dependency:
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
MODES = ("hf_batched", "hf_single", "hf_generate_batch", "llamacpp")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--num_samples", type=int, default=4)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch / llama.cpp threads (0 = their default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--math", default=GSM8K_TEST)
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--peak_memory_only", action="store_true", help=argparse.SUPPRESS)
    return parser


def load_prompts(args):
    from tpt.generate import load_tokenizer
    from tpt.io import read_questions
    from tpt.models import resolve_model
    from tpt.prompt import encode_prompt

    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path)
    questions = read_questions(args.math)[: args.questions]
    return path, tokenizer, [encode_prompt(tokenizer, q["question"]) for q in questions]


def hf_rate(path, tokenizer, prompts, num_samples, batch_size, max_tokens):
    from tpt.backends import load_backend

    backend = load_backend("hf", path, tokenizer, batch_size=batch_size, max_model_len=None)
    backend.generate(prompts[:1], 1, 0.8, 1.0, 4, seed=0)  # warm-up
    t0 = time.time()
    results = backend.generate(prompts, num_samples, 0.8, 1.0, max_tokens, seed=1, ignore_eos=True)
    seconds = time.time() - t0
    return sum(s["num_tokens"] for r in results for s in r) / seconds


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
           "--batch_size", str(args.batch_size), "--threads", str(args.threads), "--math", args.math]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    args = build_parser().parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    path, tokenizer, prompts = load_prompts(args)
    if args.peak_memory_only:
        hf_rate(path, tokenizer, prompts, args.num_samples, args.batch_size, args.max_tokens)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    runners = {
        "hf_batched": lambda: hf_rate(path, tokenizer, prompts, args.num_samples, args.batch_size, args.max_tokens),
        "hf_single": lambda: hf_rate(path, tokenizer, prompts, 1, 1, args.max_tokens),
        "hf_generate_batch": lambda: generate_batch_rate(path, prompts, args.num_samples, args.max_tokens),
        "llamacpp": lambda: llamacpp_rate(prompts, args.num_samples, args.max_tokens, args.threads),
    }
    modes = [m for m in args.modes.split(",") if m]
    rates = {m: [] for m in modes}
    # Modes interleave within each repeat, so load from other processes hits them alike.
    for r in range(args.repeats):
        for mode in modes:
            try:
                rates[mode].append(runners[mode]())
            except Exception as e:  # a missing optional dependency or an API change: report, keep going
                rates[mode].append(None)
                print(f"{mode}: failed: {type(e).__name__}: {e}", flush=True)
            print(f"repeat {r + 1} {mode}: {rates[mode][-1]}", flush=True)
    medians = {m: statistics.median(v) for m, v in rates.items() if v and all(x is not None for x in v)}
    result = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "peak_memory_only")},
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "rates": rates,
        "median_tokens_per_second": medians,
    }
    if "hf_batched" in medians:
        result["hf_batched_over"] = {m: medians["hf_batched"] / v for m, v in medians.items() if m != "hf_batched"}
        result["peak_rss_mib_hf_batched"] = peak_memory_mib(args)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
