"""Think on vLLM (CUDA GPU): one request per question with n=N (what gen_synth.py does) vs the original recipe
(the whole question set sent N times, n=1, enforce_eager=True).

    python bench/bench_vllm.py --model_name smollm2-135m --questions 500 --num_samples 5 --max_tokens 512

Each mode runs in its own process (a fresh engine, GPU memory freed between them) on the same prompt token ids
(tpt.prompt.encode_prompt, tpt template) at temperature 0.8; tokens/s counts generated tokens over generation
time (engine start-up reported apart). Status: NOT YET RUN (written on a machine without a GPU).
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
GSM8K_TEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "gsm8k", "test.jsonl")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_name", default="smollm2-135m", help="alias, hub id or local folder")
    parser.add_argument("--math", default=GSM8K_TEST)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--num_samples", type=int, default=5)
    parser.add_argument("--max_tokens", type=int, default=512)
    parser.add_argument("--max_model_len", type=int, default=1500)
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--mode", choices=("tpt", "original"), help=argparse.SUPPRESS)
    return parser


def run_mode(args):
    from tpt.backends import EngineConfig
    from tpt.backends.vllm_backend import VLLMBackend
    from tpt.generate import load_tokenizer
    from tpt.io import read_questions
    from tpt.models import load_generation_config, resolve_model, stop_token_ids
    from tpt.prompt import encode_prompt

    path = resolve_model(args.model_name)
    tokenizer = load_tokenizer(path)
    questions = read_questions(args.math)[: args.questions]
    prompts = [encode_prompt(tokenizer, q["question"]) for q in questions]
    t0 = time.time()
    # tpt: what gen_synth.py runs (CUDA graphs on); original: its gen_synth.py's engine, enforce_eager=True.
    backend = VLLMBackend(path, stop_token_ids(tokenizer, load_generation_config(path)),
                          EngineConfig(max_model_len=args.max_model_len, enforce_eager=args.mode == "original"))
    load = time.time() - t0
    t0 = time.time()
    if args.mode == "tpt":  # one request per question with n=N: each prompt is prefilled once
        runs = [backend.generate(prompts, args.num_samples, 0.8, 1.0, args.max_tokens, seed=0)]
    else:  # the original: the whole question set once per e-file, n=1
        runs = [backend.generate(prompts, 1, 0.8, 1.0, args.max_tokens, seed=i) for i in range(args.num_samples)]
    seconds = time.time() - t0
    tokens = sum(s["num_tokens"] for run in runs for per_question in run for s in per_question)
    print(json.dumps({"mode": args.mode, "tokens": tokens, "seconds": seconds, "load_seconds": load,
                      "tokens_per_second": tokens / seconds}))


def main():
    args = build_parser().parse_args()
    if args.mode:
        run_mode(args)
        return
    results = {}
    for mode in ("original", "tpt"):
        cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode] + sys.argv[1:]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(results[mode]), flush=True)
    results["speedup_tpt_over_original"] = (results["tpt"]["tokens_per_second"]
                                            / results["original"]["tokens_per_second"])
    results["settings"] = {k: v for k, v in vars(args).items() if k not in ("json", "mode")}
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
