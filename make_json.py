"""Prune, part 2: split kept traces into train and eval files by question (no question in both).

    python make_json.py --kept samples/math_train/2b/correct_answers.json --train_traces data/next/train.json \\
        --eval_traces data/next/eval.json --train_size 2000 --exclude ../shared/data/gsm8k/test.jsonl

The original's --input, --train_output and --eval_output are accepted too. Several --kept files (a round's
Think passes: think/, think_resample/, think_hint/) are split as one: a question's traces from every pass go to
the same side. Whole questions stay together: train gets at most --train_size traces, eval the other questions
(at most --eval_size traces, 200 as the original capped it; 0 = all). --exclude refuses (nothing written) any
input whose normalised question text appears in a held-out file; --drop_excluded drops those traces instead.
Writes make_json_manifest.json beside --train_traces. Run again with the same inputs and exclude files (by
content), the same settings and the same split code, it does nothing (one `skip:` line); otherwise it splits
again after one `redo:` line naming what changed.
"""
import argparse
import os

from tpt.io import DataError, read_questions, write_json
from tpt.split import check_or_drop_held_out, group_by_question, split_by_question
from tpt.stage import MAKE_JSON_MANIFEST, REDO, SPLITTER, Stage, fail


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--kept", "--input", dest="kept", nargs="+", required=True, metavar="FILE",
                   help="kept traces (correct_answers.json; records with idt or id), one file per Think pass")
    p.add_argument("--train_traces", "--train_output", dest="train_traces", default="data/next/train2k.json",
                   help="where the train traces go (sft_math.py --train_traces)")
    p.add_argument("--eval_traces", "--eval_output", dest="eval_traces", default="data/next/evnext.json",
                   help="where the eval traces go (sft_math.py --eval_traces)")
    p.add_argument("--train_size", type=int, default=2000, help="at most this many traces in train")
    p.add_argument("--eval_size", type=int, default=200, help="at most this many traces in eval (0 = all the rest)")
    p.add_argument("--seed", type=int, default=0, help="shuffles the questions")
    p.add_argument("--exclude", nargs="*", default=[], metavar="FILE",
                   help="held-out question files (e.g. the test set): refuse inputs whose question is in them")
    p.add_argument("--drop_excluded", action="store_true", help="drop held-out questions instead of refusing")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.train_size < 0 or args.eval_size < 0:
        fail("--train_size and --eval_size must be 0 or more")
    if os.path.abspath(args.train_traces) == os.path.abspath(args.eval_traces):
        fail("--train_traces and --eval_traces are the same file")
    folder = os.path.dirname(os.path.abspath(args.train_traces))
    try:
        # What the split depends on: these settings, the content (not the names) of the files read, the split's
        # code, and where the two outputs are (the manifest only vouches for files beside it).
        settings = {"train_size": args.train_size, "eval_size": args.eval_size, "seed": args.seed,
                    "drop_excluded": args.drop_excluded,
                    "train_traces": os.path.relpath(os.path.abspath(args.train_traces), folder),
                    "eval_traces": os.path.relpath(os.path.abspath(args.eval_traces), folder)}
        stage = Stage("split", os.path.dirname(args.train_traces) or ".", MAKE_JSON_MANIFEST, settings,
                      inputs={"kept": args.kept, "exclude": args.exclude}, code=SPLITTER, on_change=REDO)
        if stage.finished():
            return
        records, dropped = [], 0
        for path in args.kept:
            kept, dropped_here = check_or_drop_held_out(read_questions(path, unique_idt=False), args.exclude,
                                                        args.drop_excluded, path)
            records, dropped = records + kept, dropped + dropped_here
    except DataError as e:
        fail(str(e))
    if dropped:
        print(f"dropped {dropped} traces whose question is in {' '.join(args.exclude)}")
    train, evals = split_by_question(records, args.train_size, args.seed, args.eval_size)
    left_out = len(records) - len(train) - len(evals)
    write_json(args.train_traces, train)
    write_json(args.eval_traces, evals)
    summary = {"input_traces": len(records), "input_questions": len(group_by_question(records)),
               "train_traces": len(train), "eval_traces": len(evals), "left_out_traces": left_out,
               "dropped_excluded": dropped}
    stage.finish(vars(args), **summary)
    print(f"train: {args.train_traces} | eval: {args.eval_traces}")
    print(" | ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
