"""Think: sample N step-by-step solutions per training question into e0.json ... e{N-1}.json.

    python gen_synth.py --model_name smollm2-135m --math data/gsm8ktrain.json --num_samples 5 \
        --output_dir samples/math_train/round1 --limit 100 --max_tokens 512

The paper's run: --model_name google/gemma-2-2b-it (vLLM on a CUDA GPU is picked by --backend auto).
Each record is {qnum, question, solution, finish_reason, num_tokens, origin}; manifest.json is written last. A
killed run started again with the same arguments picks up where it stopped; a finished one is left untouched.

Beyond the paper (runs/loop.sh RESAMPLE_N, RATIONALIZE): a second pass over the questions with no kept trace yet
(--skip_solved: resampling, DART-Math), then a pass over those still unsolved with the true answer as a hint in
the prompt (--hint: rationalization, STaR). Train never sees the hint: it builds its prompt from the question.

    python gen_synth.py --math data/gsm8ktrain.json --limit 100 --num_samples 8 --seed 11 \
        --skip_solved samples/math_train/round1/correct_answers.json --output_dir samples/math_train/round1_resample
"""
import argparse

from tpt.generate import add_generation_args, format_stats, run_sampling
from tpt.io import DataError, fail


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_name", default="smollm2-135m",
                        help="embedded alias (smollm2-135m), hub id or local folder")
    parser.add_argument("--num_samples", type=int, default=2, help="solutions per question (files e0..e{N-1})")
    parser.add_argument("--math", default="data/gsm8ktrain.json", help="question file (TPT JSON or GSM8K JSONL)")
    parser.add_argument("--output_dir", default="samples/math_train/ft", help="run folder (samples, manifest)")
    parser.add_argument("--skip_solved", nargs="*", default=[], metavar="KEPT_JSON",
                        help="kept-trace files (correct_answers.json): their questions are not sampled")
    parser.add_argument("--hint", action="store_true",
                        help="put each question's true answer in its prompt as a hint (rationalization)")
    add_generation_args(parser, temperature=0.8)
    return parser


def main():
    args = build_parser().parse_args()
    try:
        stats, finished_before = run_sampling(args, skip_solved=args.skip_solved, hint=args.hint,
                                              origin="hint" if args.hint else "resample" if args.skip_solved else "sample")
    except DataError as e:
        fail(str(e))
    print(format_stats(stats))
    if finished_before:
        print(f"{args.output_dir} is finished (manifest.json); nothing to do")
        return
    if stats["num_questions"] == 0:
        print(f"every question has a kept trace ({stats['skipped_questions']} skipped): nothing to sample; "
              f"wrote manifest.json to {args.output_dir}")
        return
    print(f"wrote e0.json ... e{args.num_samples - 1}.json and manifest.json to {args.output_dir}")


if __name__ == "__main__":
    main()
