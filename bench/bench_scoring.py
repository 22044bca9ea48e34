"""Speed of scoring: evmath.py on 74,730 samples (GSM8K train x 10) against merely reading the same files.

    .venv/bin/python bench/bench_scoring.py --repeats 3

Builds e0..e9.json in a temp folder from the GSM8K train reference solutions. --endings reference keeps them
as written (`#### N`); --endings mixed (default, the harder case) ends each e-file's solutions a different way
so every branch of the extractor is exercised: plain `#### N`, bold `**#### $N**`, "The answer is N." with no
marker, a bare final number line, and no answer at all (the slowest path); e5..e9 repeat the five styles.
Both sides run as whole fresh Python processes, so interpreter start and imports count:
  read:  python -c 'json.load every e-file and parse the answer file'
  score: python evmath.py --samples_dir D --questions train.jsonl --num_samples 10 (writes all outputs)
Prints the median of each over --repeats runs (interleaved) and their ratio, in wall time and in CPU time
(user + sys of the child): on a shared machine the CPU time is the steadier measure of cost.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tpt.io import read_questions  # noqa: E402

READ_ONLY = """
import json, sys
folder, answers, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = [json.load(open(f"{folder}/e{i}.json", encoding="utf-8")) for i in range(n)]
questions = [json.loads(line) for line in open(answers, encoding="utf-8") if line.strip()]
print(sum(map(len, files)), len(questions))
"""


def ending(solution, solnum, variant):
    """The reference solution with its final line rewritten in one of five styles."""
    body = solution.rsplit("\n", 1)[0]
    return [
        f"{body}\n#### {solnum}",
        f"{body}\n\n**#### ${solnum}**",
        f"{body}\nThe answer is {solnum}.",
        f"{body}\n\n {solnum}\n\nLet me know if you have any questions!",
        f"{body}\n\nLet me know if you want the last step.",
    ][variant % 5]


def build(folder, answers, num_samples, endings):
    questions = read_questions(answers)
    for i in range(num_samples):
        records = [{"qnum": q["idt"], "question": q["question"],
                    "solution": q["solution"] if endings == "reference" else ending(q["solution"], q["solnum"], i)}
                   for q in questions]
        with open(os.path.join(folder, f"e{i}.json"), "w", encoding="utf-8") as f:
            json.dump(records, f, indent=4)
    return len(questions) * num_samples


def timed(cmd):
    """(wall seconds, CPU seconds user+sys) of one whole child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--answers", default=os.path.join(ROOT, "..", "shared", "data", "gsm8k", "train.jsonl"))
    p.add_argument("--num_samples", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--endings", choices=["mixed", "reference"], default="mixed",
                   help="mixed: five ending styles (see above); reference: the GSM8K solutions as written")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        total = build(folder, args.answers, args.num_samples, args.endings)
        size = sum(os.path.getsize(os.path.join(folder, f"e{i}.json")) for i in range(args.num_samples))
        print(f"{total} samples ({args.endings} endings) in {args.num_samples} files, {size / 1e6:.1f} MB")
        read_cmd = [sys.executable, "-c", READ_ONLY, folder, args.answers, str(args.num_samples)]
        score_cmd = [sys.executable, os.path.join(ROOT, "evmath.py"), "--samples_dir", folder,
                     "--questions", args.answers, "--num_samples", str(args.num_samples)]
        reads, scores = [], []
        manifest = os.path.join(folder, "evmath_manifest.json")
        for _ in range(args.repeats):
            reads.append(timed(read_cmd))
            if os.path.exists(manifest):  # evmath.py skips a folder it scored from the same files: score each time
                os.remove(manifest)
            scores.append(timed(score_cmd))
        with open(os.path.join(folder, "pass_at_k_results.json")) as f:
            summary = json.load(f)
    for name, index in (("wall", 0), ("cpu", 1)):
        read_s = statistics.median(r[index] for r in reads)
        score_s = statistics.median(r[index] for r in scores)
        print(f"{name:4s} read  median {read_s:.2f} s of {[round(r[index], 2) for r in reads]}")
        print(f"{name:4s} score median {score_s:.2f} s of {[round(r[index], 2) for r in scores]}")
        print(f"{name:4s} ratio score/read: {score_s / read_s:.2f}x")
    print(f"pass@1 {summary['pass@1']:.4f} no_answer_rate {summary['no_answer_rate']:.3f} "
          f"(by construction about 0.8 and 0.2 for mixed endings, 1 and 0 for the references)")


if __name__ == "__main__":
    main()
