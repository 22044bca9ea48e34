"""Eval: sample N solutions per test question and score them with the same code as evmath.py.

    python gen_eval.py --model_name smollm2-135m --math data/gsm8ktest500.json --numsamples 5 \
        --outputdir samples/math_eval/smollm2 --limit 50 --max_tokens 512

Writes e0.json ... e{N-1}.json, scored.json, pass_at_k_results.json (+ .csv), correct_answers.json and, last,
manifest.json (with the scoring summary). --temperature 0 decodes greedily. --output_dir and --num_samples are
accepted too (the original's own flag names disagreed and it crashed on that).
"""
import argparse

from tpt.generate import add_generation_args, format_stats, run_sampling
from tpt.io import DataError, fail


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_name", default="smollm2-135m",
                        help="embedded alias (smollm2-135m), hub id or local folder")
    parser.add_argument("--numsamples", "--num_samples", dest="num_samples", type=int, default=10,
                        help="solutions per question (pass@1 and pass@N)")
    parser.add_argument("--math", default="data/gsm8ktest500.json",
                        help="test question file (make_data.py gsm8k --test_size 500 writes this one)")
    parser.add_argument("--outputdir", "--output_dir", dest="output_dir", default="samples/math_eval/2b",
                        help="run folder (samples, scores, manifest)")
    add_generation_args(parser, temperature=0.7)
    return parser


def main():
    args = build_parser().parse_args()
    from tpt.scoring import format_summary, score_samples_dir

    try:
        stats, finished_before = run_sampling(
            args, score=lambda questions: score_samples_dir(args.output_dir, questions, args.num_samples))
    except DataError as e:
        fail(str(e))
    print(f"{format_stats(stats)} | {format_summary(stats['scores'])}")
    if finished_before:
        print(f"{args.output_dir} is finished (manifest.json); nothing to do")
        return
    print(f"wrote e0.json ... e{args.num_samples - 1}.json, scored.json, pass_at_k_results.json and manifest.json "
          f"to {args.output_dir}")


if __name__ == "__main__":
    main()
