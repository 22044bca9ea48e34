"""Report: did each round help? Per-round figures, a per-question ledger, paired tests and a verdict per round.

    python report.py --rounds out/round0/eval out/round1/eval out/round2/eval --out out/report
    python report.py --rounds base_eval/ tuned_eval/ --labels base r1 --out out/report --wandb

Each --rounds folder is a scored Eval folder (evmath.py's scored.json and pass_at_k_results.json beside the
e*.json); in a loop's layout (OUT/round{r}/eval) the think/, data/ and model/ folders beside it add kept traces,
tokens/s and wall times. Writes report.md, report.json, ledger.csv, pass_at_1.png and per_question_changes.png.
The last line printed is `report: <path to report.md>`.
"""
import argparse

from tpt.io import DataError
from tpt.stage import fail
from tpt.report import build_report, format_round, log_to_wandb


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rounds", nargs="+", required=True, help="scored Eval folders, one per round, in order")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="names of the rounds (default: roundK from OUT/roundK/eval, else the folder names)")
    parser.add_argument("--out", default="out/report", help="folder for report.md, report.json, ledger.csv and PNGs")
    parser.add_argument("--bootstrap", type=int, default=10000, help="paired-bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap")
    parser.add_argument("--wandb", action="store_true", help="also log the figures to W&B (WANDB_MODE=offline works)")
    parser.add_argument("--wandb_project", default="tpt")
    parser.add_argument("--run_name", default="report", help="W&B run name")
    return parser


def main():
    args = build_parser().parse_args()
    try:
        md_path, report = build_report(args.rounds, args.out, args.labels, args.bootstrap, args.seed)
    except DataError as e:
        fail(str(e))
    for r in report["rounds"]:
        print(format_round(r))
    for c in report["comparisons"]:
        print(c["verdict"])
    if args.wandb:
        print(f"wandb: logged to {log_to_wandb(report, args.wandb_project, args.run_name, args.out)}")
    print(f"report: {md_path}")


if __name__ == "__main__":
    main()
