"""Eval: sample N solutions per test question and score them with the same code as evmath.py.

    python gen_eval.py --model_name smollm2-135m --questions data/gsm8ktest500.json --num_samples 5 \
        --samples_dir samples/math_eval/smollm2 --limit 50 --max_tokens 512

Writes e0.json ... e{N-1}.json, scored.json, pass_at_k_results.json (+ .csv), correct_answers.json and, last,
manifest.json (with the scoring summary). --temperature 0 decodes greedily. Run again on its finished folder, it
skips; a changed setting is refused (tpt/stage.py); a changed scorer (tpt.stage.SCORER) re-scores the samples
it has, sampling nothing. The original's spellings
--math, --outputdir/--output_dir and --numsamples are accepted too (its own flag names disagreed).
"""
import argparse

from tpt.generate import (SamplingConfig, add_generation_args, check_config, finished_sampling_run, format_stats,
                          sample_questions, sampling_stage, select_questions, write_run_manifest)
from tpt.io import DataError, read_questions
from tpt.stage import SCORER, code_sha256, fail, redo


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_name", default="smollm2-135m",
                        help="embedded alias (smollm2-135m), hub id or local folder")
    parser.add_argument("--num_samples", "--numsamples", dest="num_samples", type=int, default=10,
                        help="solutions per question (pass@1 and pass@N)")
    parser.add_argument("--questions", "--math", dest="questions", default="data/gsm8ktest500.json",
                        help="test question file (make_data.py gsm8k --test_size 500 writes this one)")
    parser.add_argument("--samples_dir", "--output_dir", "--outputdir", dest="samples_dir",
                        default="samples/math_eval/2b", help="run folder (samples, scores, manifest)")
    add_generation_args(parser, temperature=0.7)
    return parser


def main():
    args = build_parser().parse_args()
    config = SamplingConfig.from_flags(vars(args))
    from tpt.scoring import format_summary, score_samples_dir

    try:
        questions = select_questions(read_questions(args.questions), args.limit)
        check_config(config)
        stage = sampling_stage("Eval", config, questions, args.samples_dir, {"limit": args.limit})
        finished = finished_sampling_run(stage, announce=False)
        scorer = code_sha256(SCORER)
        if finished is not None and finished.get("scorer_sha256") == scorer:
            stage.say_skip()
            print(f"{format_stats(finished)} | {format_summary(finished['scores'])}")
            return
        if finished is not None:  # the samples are this run's; only how their answers are read changed
            redo(args.samples_dir, "its scores (the scorer's code changed since they were written)")
            stats = {k: v for k, v in finished.items() if k not in ("script", "argv", "args", "versions",
                                                                     "finished_at", "fingerprint")}
        else:
            stats = sample_questions(config, questions, args.questions, stage)
        stats["scores"] = score_samples_dir(args.samples_dir, questions, config.num_samples)
        stats["scorer_sha256"] = scorer
        write_run_manifest(stage, vars(args), stats)
    except DataError as e:
        fail(str(e))

    print(f"{format_stats(stats)} | {format_summary(stats['scores'])}")
    print(f"wrote e0.json ... e{config.num_samples - 1}.json, scored.json, pass_at_k_results.json and manifest.json "
          f"to {args.samples_dir}")


if __name__ == "__main__":
    main()
