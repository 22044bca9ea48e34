"""Think: sample N step-by-step solutions per training question into e0.json ... e{N-1}.json.

    python gen_synth.py --model_name smollm2-135m --questions data/gsm8ktrain.json --num_samples 5 \
        --samples_dir samples/math_train/round1 --limit 100 --max_tokens 512

The paper's run: --model_name google/gemma-2-2b-it (vLLM on a CUDA GPU is picked by --backend auto).
Each record is {qnum, question, solution, finish_reason, num_tokens, origin}; manifest.json is written last. A
killed run started again with the same arguments picks up where it stopped; a finished one is left untouched.

Beyond the paper (runs/loop.sh RESAMPLE_N, RATIONALIZE): a second pass over the questions with no kept trace yet
(--skip_solved: resampling, DART-Math), then a pass over those still unsolved with the true answer as a hint in
the prompt (--hint: rationalization, STaR). Train never sees the hint: it builds its prompt from the question.

    python gen_synth.py --questions data/gsm8ktrain.json --limit 100 --num_samples 8 --seed 11 \
        --skip_solved samples/math_train/round1/correct_answers.json --samples_dir samples/math_train/round1_resample
"""
import argparse

from tpt.generate import (SamplingConfig, add_generation_args, check_config, finished_sampling_run, format_stats,
                          sample_questions, sampling_stage, select_questions, unsolved_questions, with_hints,
                          write_run_manifest)
from tpt.io import DataError, read_questions
from tpt.stage import fail


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_name", default="smollm2-135m",
                        help="embedded alias (smollm2-135m), hub id or local folder")
    parser.add_argument("--num_samples", "--numsamples", dest="num_samples", type=int, default=5,
                        help="solutions per question (files e0..e{N-1})")
    parser.add_argument("--questions", "--math", dest="questions", default="data/gsm8ktrain.json",
                        help="question file (TPT JSON or GSM8K JSONL)")
    parser.add_argument("--samples_dir", "--output_dir", "--outputdir", dest="samples_dir",
                        default="samples/math_train/ft", help="run folder (samples, manifest)")
    parser.add_argument("--skip_solved", nargs="*", default=[], metavar="KEPT_JSON",
                        help="kept-trace files (correct_answers.json): their questions are not sampled")
    parser.add_argument("--hint", action="store_true",
                        help="put each question's true answer in its prompt as a hint (rationalization)")
    add_generation_args(parser, temperature=0.8)
    return parser


def main():
    args = build_parser().parse_args()
    config = SamplingConfig.from_flags(vars(args))
    origin = "hint" if args.hint else "resample" if args.skip_solved else "sample"
    try:
        questions = select_questions(read_questions(args.questions), args.limit)
        questions, skipped = unsolved_questions(questions, args.skip_solved)
        if args.hint:
            questions = with_hints(questions)
        check_config(config)
        stage = sampling_stage("Think", config, questions, args.samples_dir, {"limit": args.limit, "hint": args.hint})
        finished = finished_sampling_run(stage)
        if finished is not None:
            print(format_stats(finished))
            return
        if questions:
            stats = sample_questions(config, questions, args.questions, stage, origin)
        else:  # every question has a kept trace: no model is loaded, the manifest says so
            stats = {"num_questions": 0, "num_samples": config.num_samples, "generated_tokens": 0,
                     "tokens_per_second": None, "truncated": 0, "backend": "-"}
        stats["skipped_questions"] = skipped
        write_run_manifest(stage, vars(args), stats)
    except DataError as e:
        fail(str(e))

    print(format_stats(stats))
    if not questions:
        print(f"every question has a kept trace ({skipped} skipped): nothing to sample; "
              f"wrote manifest.json to {args.samples_dir}")
    else:
        print(f"wrote e0.json ... e{config.num_samples - 1}.json and manifest.json to {args.samples_dir}")


if __name__ == "__main__":
    main()
