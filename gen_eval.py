"""Eval: sample N solutions per test question and score them with the same code as evmath.py.

    python gen_eval.py --model_name smollm2-135m --questions data/gsm8ktest500.json --num_samples 5 \
        --samples_dir samples/math_eval/smollm2 --limit 50 --max_tokens 512
    # lm-evaluation-harness's GSM8K tasks (5-shot, and 8-shot chain of thought), greedy, as papers report them
    python gen_eval.py --task gsm8k --model_name smollm2-135m --questions data/gsm8ktest.json \
        --fewshot_file data/gsm8ktrain.json --samples_dir samples/math_eval/smollm2_gsm8k
    python gen_eval.py --task gsm8k_cot --model_name smollm2-135m --questions data/gsm8ktest.json \
        --samples_dir samples/math_eval/smollm2_gsm8k_cot

Writes e0.json ... e{N-1}.json, scored.json, pass_at_k_results.json (+ .csv), correct_answers.json and, last,
manifest.json (with the scoring summary). --temperature 0 decodes greedily. Run again on its finished folder, it
skips; a changed setting is refused (tpt/stage.py); a changed scorer (tpt.stage.SCORER) re-scores the samples
it has, sampling nothing. The original's spellings
--math, --outputdir/--output_dir and --numsamples are accepted too (its own flag names disagreed).

--task: tpt (the TPT paper's prompt in the model's chat template), or lm-eval 0.4.13's gsm8k / gsm8k_cot (the
harness's prompt, shots, stop strings, greedy decoding and 256-token limit; plain text unless
--apply_chat_template; tpt.prompt says what each is). gsm8k draws the harness's 5 shots from --fewshot_file,
the whole GSM8K train split in order (make_data.py's gsm8ktrain.json), by each question's row in the test split
(its idt). pass_at_k_results.json gives, beside ours (answer, strict, format), the harness's two filters of the
task as lmeval_strict_match_* and lmeval_flexible_extract_* (its exact_match when greedy).
"""
import argparse

from tpt.generate import (SamplingConfig, add_generation_args, check_config, finished_sampling_run, format_stats,
                          sample_questions, sampling_stage, select_questions, write_run_manifest)
from tpt.io import DataError, read_questions
from tpt.prompt import LMEVAL_MAX_GEN_TOKS, TASKS, fewshot_examples, uses_fewshot_file
from tpt.stage import SCORER, code_sha256, fail, redo

# The defaults that depend on --task (flags left at None): the original's sampling for tpt, the harness's greedy
# decoding, one sample, its max_gen_toks and the model's own context length for gsm8k and gsm8k_cot.
TASK_DEFAULTS = {
    "tpt": {"num_samples": 10, "temperature": 0.7, "max_tokens": 1500, "max_model_len": 1500},
    "lmeval": {"num_samples": 1, "temperature": 0.0, "max_tokens": LMEVAL_MAX_GEN_TOKS, "max_model_len": 0},
}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_name", default="smollm2-135m",
                        help="embedded alias (smollm2-135m), hub id or local folder")
    parser.add_argument("--task", choices=TASKS, default="tpt",
                        help="the prompt: tpt (the TPT paper's), or lm-eval's gsm8k (5-shot) / gsm8k_cot (8-shot CoT)")
    parser.add_argument("--fewshot_file", default="data/gsm8ktrain.json",
                        help="--task gsm8k: the train questions its shots are drawn from (never the test questions)")
    parser.add_argument("--apply_chat_template", action="store_true",
                        help="lm-eval tasks: put the prompt in the model's chat template (the harness's flag)")
    parser.add_argument("--num_samples", "--numsamples", dest="num_samples", type=int, default=None,
                        help="solutions per question (pass@1 and pass@N); None = 10 for tpt, 1 for lm-eval tasks")
    parser.add_argument("--questions", "--math", dest="questions", default="data/gsm8ktest500.json",
                        help="test question file (make_data.py gsm8k --test_size 500 writes this one)")
    parser.add_argument("--samples_dir", "--output_dir", "--outputdir", dest="samples_dir",
                        default="samples/math_eval/2b", help="run folder (samples, scores, manifest)")
    add_generation_args(parser, temperature=None, max_tokens=None, max_model_len=None)
    return parser


def task_flags(flags):
    """The flags with the defaults of their --task filled in."""
    defaults = TASK_DEFAULTS["tpt" if flags["task"] == "tpt" else "lmeval"]
    return {k: defaults[k] if k in defaults and v is None else v for k, v in flags.items()}


def main():
    args = build_parser().parse_args()
    flags = task_flags(vars(args))
    config = SamplingConfig.from_flags(flags)
    from tpt.scoring import format_summary, score_eval_dir

    try:
        questions = select_questions(read_questions(args.questions), args.limit)
        check_config(config)
        train = read_questions(args.fewshot_file) if uses_fewshot_file(args.task) else []
        if args.task != "tpt":
            questions = [dict(q, shots=shots) for q, shots in zip(questions, fewshot_examples(args.task, questions,
                                                                                             train))]
        stage = sampling_stage("Eval", config, questions, args.samples_dir,
                               {"limit": args.limit, "task": config.task,
                                "apply_chat_template": config.apply_chat_template})
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
        stats["scores"] = score_eval_dir(args.samples_dir, questions, config.num_samples, config.task)
        stats["scorer_sha256"] = scorer
        write_run_manifest(stage, flags, stats)
    except DataError as e:
        fail(str(e))

    print(f"{format_stats(stats)} | {format_summary(stats['scores'])}")
    print(f"wrote e0.json ... e{config.num_samples - 1}.json, scored.json, pass_at_k_results.json and manifest.json "
          f"to {args.samples_dir}")


if __name__ == "__main__":
    main()
