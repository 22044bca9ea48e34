"""Training throughput of sft_math.py's set-up on this machine: real tokens/s and peak memory per batching mode.

    python bench/bench_train.py                      # both modes, 5 steps each, prints a markdown table
    python bench/bench_train.py --steps 8 --batch_size 4

Each mode runs in its own process (so peak RSS is its own) on the same real traces (a seeded sample of
math2b_2k with the default tpt prompt), through tpt.train exactly as sft_math.py builds the trainer.
Per optimizer step: real tokens (prompt + completion + end-of-turn, no padding) and token positions (with padding).

The no-padding bound: the rate at which the padded runs process token positions (real + padding) per second
(the faster of grouped and padding).
Batching without padding can at best make every one of those positions a real token, so its real tokens/s can
reach that rate and not more; the default must be within 10% of it. The first step (warm-up) is left out; the
figures are medians over the remaining steps. Results also go to bench/results/bench_train.json.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


# Each batching mode as sft_math.py flags (TRL's own).
MODES = {
    "grouped": ["--train_sampling_strategy", "group_by_length"],  # the default (bf16 autocast where the CPU has it)
    "grouped_float32": ["--train_sampling_strategy", "group_by_length", "--bf16", "false"],
    "padding": ["--train_sampling_strategy", "random"],
    "padding_free": ["--train_sampling_strategy", "random", "--padding_free", "true"],
}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--traces", default=os.path.join(ROOT, "..", "shared", "data", "tpt_reference", "math2b_2k.json"))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=5, help="optimizer steps per mode (the first is not counted)")
    p.add_argument("--batch_size", type=int, default=2, help="traces per step (sft_math.py's per-device default)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--epoch_traces", type=int, default=100, help="traces in the epoch whose wall time is estimated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--one_mode", default=None, help=argparse.SUPPRESS)  # internal: run one mode in this process
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "bench_train.json"))
    return p


def sample_traces(path, n, seed):
    import random

    from tpt.io import read_questions

    records = read_questions(path)
    return random.Random(seed).sample(records, n)


def run_mode(args):
    """Train args.steps steps in one batching mode; return per-step timings and token counts."""
    import tempfile

    from transformers import AutoTokenizer, GenerationConfig, TrainerCallback
    from trl import SFTTrainer

    import sft_math
    from tpt.models import resolve_model
    from tpt.train_data import build_dataset, end_of_turn_id, prepare_examples
    from tpt.train import configure

    records = sample_traces(args.traces, args.steps * args.batch_size, args.seed)
    work = tempfile.mkdtemp(prefix="bench_train.")
    _, config, _ = sft_math.build_parser().parse_args_and_config([
        "--train_traces", args.traces, "--output_dir", work, "--report_to", "none", *MODES[args.one_mode],
        "--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch_size),
        "--gradient_accumulation_steps", "1", "--save_strategy", "no", "--model_name_or_path", args.model,
    ])
    path = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    eot = end_of_turn_id(tok, GenerationConfig.from_pretrained(path))
    max_length = configure(config, work, work, False, {"dtype": "float32", "device_map": None})
    trainer = SFTTrainer(model=path, args=config, train_dataset=build_dataset(records), processing_class=tok)
    trainer.train_dataset, _ = prepare_examples(trainer.train_dataset, tok, records, "tpt", eot, max_length)

    batches, steps = [], []
    collate = trainer.data_collator

    def counting_collator(examples):
        batch = collate(examples)
        batches.append((sum(len(e["input_ids"]) for e in examples), batch["input_ids"].numel()))
        return batch

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            steps.append(time.perf_counter() - self.t)

    trainer.data_collator = counting_collator
    trainer.add_callback(StepTimer())
    trainer.train()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    real = [b[0] for b in batches[: len(steps)]]
    positions = [b[1] for b in batches[: len(steps)]]
    return {"mode": args.one_mode, "step_seconds": steps, "real_tokens": real, "positions": positions,
            "peak_rss_mb": peak_mb, "torch_threads": __import__("torch").get_num_threads()}


def epoch_tokens(args):
    """Real tokens of a --epoch_traces epoch (same sampling, tpt prompt), counted with the tokenizer."""
    from transformers import AutoTokenizer

    from tpt.models import resolve_model
    from tpt.prompt import build_prompt

    tok = AutoTokenizer.from_pretrained(resolve_model(args.model))
    records = sample_traces(args.traces, args.epoch_traces, args.seed + 1)
    return sum(len(tok(build_prompt(tok, r["question"]) + r["solution"] + tok.eos_token, add_special_tokens=False)["input_ids"])
               for r in records)


def main():
    args = build_parser().parse_args()
    if args.one_mode:
        print(json.dumps(run_mode(args)))
        return
    results = {}
    for mode in args.modes:
        cmd = [sys.executable, os.path.abspath(__file__), "--one_mode", mode] + sys.argv[1:]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        counted = range(1, len(r["step_seconds"]))  # the first step warms up
        r["real_tokens_per_s"] = statistics.median(r["real_tokens"][i] / r["step_seconds"][i] for i in counted)
        r["positions_per_s"] = statistics.median(r["positions"][i] / r["step_seconds"][i] for i in counted)
        r["padding_share"] = 1 - sum(r["real_tokens"]) / sum(r["positions"])
        results[mode] = r
        print(f"{mode}: {r['real_tokens_per_s']:.1f} real tokens/s, peak RSS {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
    padded = [r["positions_per_s"] for m, r in results.items() if m != "padding_free"]
    bound = max(padded) if padded else None
    tokens = epoch_tokens(args)
    print(f"| batching | real tokens/s | token positions/s | padding share | peak RSS (MB) | vs no-padding bound | "
          f"{args.epoch_traces}-trace epoch (est.) |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        ratio = f"{r['real_tokens_per_s'] / bound:.2f}" if bound else "n/a"
        print(f"| {mode} | {r['real_tokens_per_s']:.1f} | {r['positions_per_s']:.1f} | {r['padding_share']:.0%} | "
              f"{r['peak_rss_mb']:.0f} | {ratio} | {tokens / r['real_tokens_per_s'] / 60:.0f} min |")
    print(f"\nno-padding bound = padded run's token positions/s = {bound:.1f}; {args.epoch_traces}-trace epoch = "
          f"{tokens} real tokens; steps of {args.batch_size} traces, medians of steps 2..{args.steps}, "
          f"{results[args.modes[0]]['torch_threads']} torch threads, load average {os.getloadavg()[0]:.1f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    from tpt.io import write_json

    write_json(args.out, {"args": vars(args), "results": results, "no_padding_bound": bound, "epoch_real_tokens": tokens})


if __name__ == "__main__":
    main()
