"""Where a loop's files go: the one place that names OUT's folders and the files the loop and the report read.

    OUT/round0/eval/                   Eval of the base model
    OUT/round{r}/think/                Think (samples e*.json, manifest.json), then Prune's scores and kept traces
    OUT/round{r}/think_resample/       with RESAMPLE_N: Think again on the questions with no kept trace
    OUT/round{r}/think_hint/           with RATIONALIZE: Think with the answer as a hint on those still unsolved
    OUT/round{r}/data/                 Prune's split: train.json, eval.json
    OUT/round{r}/model/                Train's model
    OUT/round{r}/eval/                 Eval of that model
    OUT/report/                        the report

runs/loop.sh reads the folders of a round as shell variables:

    python -m tpt.layout --out out/loop --round 1
"""
import argparse
import os
import shlex

THINK, DATA, MODEL, EVAL, REPORT = "think", "data", "model", "eval", "report"
# Think passes in the order the loop runs them: folder name -> the `origin` their kept traces carry.
THINK_PASSES = {THINK: "sample", "think_resample": "resample", "think_hint": "hint"}

# The manifests each stage writes are named in tpt/stage.py.

# What scoring writes into a samples folder.
SCORED_FILE = "scored.json"
SUMMARY_FILE = "pass_at_k_results.json"
CSV_FILE = "pass_at_k_results.csv"
KEPT_FILE = "correct_answers.json"

# Prune's split, in the data folder.
TRAIN_FILE = "train.json"
EVAL_FILE = "eval.json"


def round_dir(out, r):
    return os.path.join(out, f"round{r}")


def report_dir(out):
    return os.path.join(out, REPORT)


def round_folders(round_path):
    """{name: folder} of one round: the Think passes, data, model and eval."""
    return {name: os.path.join(round_path, name) for name in (*THINK_PASSES, DATA, MODEL, EVAL)}


def shell_assignments(out, r):
    """The lines runs/loop.sh evals: think_dir=... one per folder of round r, the split's two files (train_traces, eval_traces), report_dir,
    and kept_file, the name of the kept traces in a Think folder."""
    folders = round_folders(round_dir(out, r))
    values = {f"{name}_dir": path for name, path in folders.items()}
    values["train_traces"] = os.path.join(folders[DATA], TRAIN_FILE)
    values["eval_traces"] = os.path.join(folders[DATA], EVAL_FILE)
    values["report_dir"] = report_dir(out)
    values["kept_file"] = KEPT_FILE
    return "\n".join(f"{name}={shlex.quote(path)}" for name, path in values.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print a loop round's folders as shell assignments.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="the loop's OUT folder")
    parser.add_argument("--round", type=int, required=True, help="round number (0 = the base model's Eval)")
    args = parser.parse_args(argv)
    print(shell_assignments(args.out, args.round))


if __name__ == "__main__":
    main()
