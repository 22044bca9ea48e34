"""Score one samples folder with every extraction mode side by side, and list where they disagree.

    .venv/bin/python bench/compare_scorers.py --samples_dir ../shared/data/tpt_reference/gemma2b_test500 \\
        --answer_path ../shared/data/tpt_reference/test500.json --num_samples 10
    # read disagreements in batches (the hand-check):
    .venv/bin/python bench/compare_scorers.py ... --show lmeval_flexible --start 0 --count 50
    .venv/bin/python bench/compare_scorers.py ... --show tpt_original --shuffle_seed 1 --count 110

A disagreement is a sample that one mode scores correct and "answer" (ours) does not, or the reverse.

The math_verify column is Hugging Face's math-verify (the rule open-r1 and TRL's accuracy reward use):
parse() on the whole solution with its default LaTeX and expression extraction, then verify() against the
gold number. It is a bench-only dependency: `pip install -r bench/requirements.txt`; without it the column
is left out with a note.
"""
import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tpt.extract import MODES, REFERENCE_MODES, extract_answer, is_correct, number_text  # noqa: E402
from tpt.io import read_questions, read_samples, sample_paths  # noqa: E402
from tpt.metrics import mean_pass_at_k  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--samples_dir", required=True)
    p.add_argument("--answer_path", required=True)
    p.add_argument("--num_samples", type=int, default=10)
    p.add_argument("--show", choices=MODES + REFERENCE_MODES + (MATH_VERIFY,),
                   help="print the disagreements with this mode")
    p.add_argument("--start", type=int, default=0, help="first disagreement to print")
    p.add_argument("--count", type=int, default=50, help="how many disagreements to print")
    p.add_argument("--tail", type=int, default=300, help="characters of each solution's ending to print")
    p.add_argument("--shuffle_seed", type=int, default=None,
                   help="print the disagreements in a seeded random order (a sample for the hand-check)")
    p.add_argument("--hide_same_value", action="store_true",
                   help="skip disagreements where both extracted the same number and only the spelling differs "
                        "(e.g. '$28.00' against '28')")
    return p


MATH_VERIFY = "math_verify"


def math_verify_verdicts(questions, files):
    """{(qnum, sample): (what math-verify extracted, its verdict)}, or None when math-verify is not installed."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    # The gold as LaTeX math in its canonical spelling ('2,125' would parse as a pair of numbers).
    gold = {q["idt"]: parse(f"${number_text(q['solnum']) or q['solnum']}$") for q in questions}
    out = {}
    for index, records in enumerate(files):
        for rec in records:
            parsed = parse(rec["solution"])
            answer = (str(parsed[1]) if len(parsed) > 1 else str(parsed[0])) if parsed else None
            out[(rec["qnum"], index)] = (answer, bool(parsed) and verify(gold[rec["qnum"]], parsed))
    return out


def verdicts(questions, files, mode):
    gold = {q["idt"]: q["solnum"] for q in questions}
    out = {}
    for index, records in enumerate(files):
        for rec in records:
            answer = extract_answer(rec["solution"], mode)
            out[(rec["qnum"], index)] = (answer, is_correct(answer, gold[rec["qnum"]], mode))
    return out


def main():
    args = build_parser().parse_args()
    questions = read_questions(args.answer_path)
    files = [read_samples(p, questions) for p in sample_paths(args.samples_dir, args.num_samples)]
    modes = MODES + REFERENCE_MODES
    results = {m: verdicts(questions, files, m) for m in modes}
    reference = math_verify_verdicts(questions, files)
    if reference is None:
        print("math_verify: not installed, column left out (pip install -r bench/requirements.txt)")
    else:
        modes += (MATH_VERIFY,)
        results[MATH_VERIFY] = reference
    ours = results["answer"]
    print(f"{'mode':16s} {'pass@1':>7s} {'pass@' + str(args.num_samples):>7s} {'no-ans':>7s} "
          f"{'disagree':>8s} {'ours+':>6s} {'theirs+':>7s}")
    for m in modes:
        counts = {}
        for (qnum, _), (_, ok) in results[m].items():
            counts[qnum] = counts.get(qnum, 0) + ok
        c = list(counts.values())
        no_answer = sum(a is None for a, _ in results[m].values())
        ours_only = sum(ours[key][1] and not v[1] for key, v in results[m].items())
        theirs_only = sum(v[1] and not ours[key][1] for key, v in results[m].items())
        print(f"{m:16s} {mean_pass_at_k(c, args.num_samples, 1):7.4f} "
              f"{mean_pass_at_k(c, args.num_samples, args.num_samples):7.4f} {no_answer:7d} "
              f"{ours_only + theirs_only:8d} {ours_only:6d} {theirs_only:7d}")
    if args.show and args.show not in results:
        sys.exit(f"error: --show {args.show}: math-verify is not installed")
    if args.show:
        gold = {q["idt"]: q["solnum"] for q in questions}
        text = {(rec["qnum"], i): rec["solution"] for i, records in enumerate(files) for rec in records}
        keys = [k for k in sorted(ours, key=lambda k: (k[1], str(k[0])))
                if ours[k][1] != results[args.show][k][1]]
        if args.hide_same_value:
            keys = [k for k in keys if number_text(results[args.show][k][0]) != ours[k][0]]
        if args.shuffle_seed is not None:
            random.Random(args.shuffle_seed).shuffle(keys)
        print(f"\n{len(keys)} disagreements between answer and {args.show}; "
              f"showing {args.start}..{args.start + args.count - 1}")
        for n, key in enumerate(keys[args.start:args.start + args.count], args.start):
            print(f"\n#{n} qnum {key[0]} e{key[1]} gold {gold[key[0]]!r} | answer {ours[key][0]!r} "
                  f"({'right' if ours[key][1] else 'wrong'}) | {args.show} {results[args.show][key][0]!r}")
            print("   ..." + text[key][-args.tail:].replace("\n", "\n   "))


if __name__ == "__main__":
    main()
