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
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from tpt.backends import end_token_ids
    from tpt.generate import load_tokenizer
    from tpt.io import read_questions
    from tpt.models import resolve_model
    from tpt.prompt import encode_prompt

    path = resolve_model(args.model_name)
    tokenizer = load_tokenizer(path)
    questions = read_questions(args.math)[: args.questions]
    prompts = [TokensPrompt(prompt_token_ids=encode_prompt(tokenizer, q["question"])) for q in questions]
    stop = end_token_ids(path, tokenizer)
    t0 = time.time()
    if args.mode == "tpt":  # what tpt/backends/vllm_backend.py builds
        llm = LLM(model=path, seed=0, max_model_len=args.max_model_len, enable_prefix_caching=True)
    else:  # the original gen_synth.py's engine
        llm = LLM(model=path, tensor_parallel_size=1, max_model_len=args.max_model_len, enforce_eager=True)
    load = time.time() - t0
    t0 = time.time()
    if args.mode == "tpt":
        params = SamplingParams(n=args.num_samples, temperature=0.8, max_tokens=args.max_tokens, seed=0,
                                stop_token_ids=stop)
        outputs = llm.generate(prompts, params, use_tqdm=False)
        tokens = sum(len(o.token_ids) for out in outputs for o in out.outputs)
    else:
        params = SamplingParams(temperature=0.8, max_tokens=args.max_tokens, stop_token_ids=stop)
        tokens = 0
        for _ in range(args.num_samples):  # one pass over the question set per e-file
            outputs = llm.generate(prompts, params, use_tqdm=False)
            tokens += sum(len(out.outputs[0].token_ids) for out in outputs)
    seconds = time.time() - t0
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
