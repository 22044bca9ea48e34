"""Make TPT question files {idt, question, solution, solnum}, or check that a train and a test file are disjoint.

GSM8K for real runs (the seed's data/gsm8ktrain.json and data/gsm8ktest.json, idt = row index):
    python make_data.py gsm8k --gsm8k_dir ../shared/data/gsm8k --out_dir data --test_size 500
    python make_data.py gsm8k --out_dir data            # from the hub: needs `pip install datasets` and internet
reasoning-gym problems for the offline demo (train and test from different seeds, overlap removed from train):
    python make_data.py gym --out_dir out/demo/data --train_size 200 --test_size 50 --train_seed 1 --test_seed 1000000
The leakage guard a loop calls before it trains (exit 2 and one line naming both files when they share a question):
    python make_data.py check --train_questions data/gsm8ktrain.json --test_questions data/gsm8ktest.json

gsm8k and gym run again with the same flags (and, for --gsm8k_dir, the same file contents) into a folder that
holds their finished output do nothing (one `skip:` line); with other flags or code they make it again, after
one `redo:` line naming what changed.
"""
import argparse
import json
import os

from tpt.data import DEMO_TASK, DEMO_TASK_CONFIG, check_disjoint, gsm8k_from_dir, gsm8k_from_hub, make_gym_split, random_subset
from tpt.io import DataError, read_questions, write_json
from tpt.stage import DATA_MAKER, MAKE_DATA_MANIFEST, REDO, Stage, fail


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    gsm = sub.add_parser("gsm8k", help="GSM8K from local jsonl files or the hub", formatter_class=fmt)
    gsm.add_argument("--gsm8k_dir", default=None, help="folder with GSM8K's train.jsonl and test.jsonl; none = the hub")
    gsm.add_argument("--out_dir", default="data", help="writes gsm8ktrain.json and gsm8ktest.json here")
    gsm.add_argument("--test_size", type=int, default=0, help="also write gsm8ktest{N}.json, N random test questions")
    gsm.add_argument("--seed", type=int, default=0, help="seed of the test subset")

    gym = sub.add_parser("gym", help="reasoning-gym problems, made offline", formatter_class=fmt)
    gym.add_argument("--out_dir", default="out/demo/data", help="writes train.json and test.json here")
    gym.add_argument("--task", default=DEMO_TASK, help="a reasoning-gym task with numeric answers")
    gym.add_argument("--task_config", default=json.dumps(DEMO_TASK_CONFIG), help="the task's config as JSON")
    gym.add_argument("--train_size", type=int, default=200, help="problems generated for train (before overlap removal)")
    gym.add_argument("--test_size", type=int, default=50, help="problems generated for test (repeats dropped)")
    gym.add_argument("--train_seed", type=int, default=1, help="seed of the train problems")
    gym.add_argument("--test_seed", type=int, default=1_000_000, help="at least train_size + test_size from train_seed")

    check = sub.add_parser("check", help="fail when train and test share a question", formatter_class=fmt)
    check.add_argument("--train_questions", "--train", dest="train_questions", required=True,
                       help="the training question file")
    check.add_argument("--test_questions", "--test", dest="test_questions", required=True,
                       help="the held-out question file")
    return parser


def data_stage(args):
    """What the files depend on: every flag but the folders, the content of the local GSM8K files, and the code
    that makes them."""
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in ("out_dir", "gsm8k_dir")}
    local = args.source == "gsm8k" and args.gsm8k_dir
    inputs = {"gsm8k": [os.path.join(args.gsm8k_dir, f"{split}.jsonl") for split in ("train", "test")]} if local else {}
    return Stage("data", args.out_dir, MAKE_DATA_MANIFEST, settings, inputs=inputs, code=DATA_MAKER, on_change=REDO)


def run_gsm8k(args):
    train, test = gsm8k_from_dir(args.gsm8k_dir) if args.gsm8k_dir else gsm8k_from_hub()
    files = {"gsm8ktrain.json": train, "gsm8ktest.json": test}
    if args.test_size:
        files[f"gsm8ktest{args.test_size}.json"] = random_subset(test, args.test_size, args.seed)
    return files, {"source": args.gsm8k_dir or "hub:openai/gsm8k"}


def run_gym(args):
    try:
        config = json.loads(args.task_config)
    except json.JSONDecodeError as e:
        raise DataError(f"--task_config is not JSON: {e.msg}") from None
    train, test, counts = make_gym_split(args.task, args.train_size, args.test_size, args.train_seed, args.test_seed, config)
    print(f"make_data: {args.task}: dropped {counts['train_overlap']} train question(s) that are also test questions, "
          f"{counts['train_duplicates']} repeated train and {counts['test_duplicates']} repeated test question(s)")
    return {"train.json": train, "test.json": test}, {"source": f"reasoning_gym:{args.task}", **counts}


def main():
    args = build_parser().parse_args()
    try:
        if args.source == "check":
            train, test = read_questions(args.train_questions), read_questions(args.test_questions)
            check_disjoint(train, test, args.train_questions, args.test_questions)
            print(f"check: {args.train_questions} ({len(train)}) and {args.test_questions} ({len(test)}) share no "
                  "question")
            return
        stage = data_stage(args)
        if stage.finished():
            return
        files, fields = run_gsm8k(args) if args.source == "gsm8k" else run_gym(args)
    except DataError as e:
        fail(str(e))
    for name, questions in files.items():
        write_json(os.path.join(args.out_dir, name), questions)
    counts = {name: len(q) for name, q in files.items()}
    stage.finish(vars(args), files=counts, **fields)
    print(f"make_data: wrote {', '.join(f'{n} ({c})' for n, c in counts.items())} to {args.out_dir}")


if __name__ == "__main__":
    main()
