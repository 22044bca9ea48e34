"""Prune, part 1: score sampled solutions and keep the correct traces.

    python evmath.py --samples_dir samples/math_eval/2b --questions ../shared/data/tpt_reference/test500.json \\
        --num_samples 10

--samples_dir is a folder holding e0.json ... e{N-1}.json, or (as the original's tpt_workflow.sh passes it) a
root whose subfolders each hold one model's e*.json: each is scored. Writes into each samples folder
scored.json, pass_at_k_results.json, pass_at_k_results.csv, correct_answers.json and evmath_manifest.json.
Every folder is read and validated before anything is written. The original's --answer_path is accepted for
--questions.

Run again, a folder already scored from the same files (answer file and e-files, by content) with the same
settings and the same scorer code (tpt.stage.SCORER) is skipped with one `skip:` line; otherwise it is scored
again after one `redo:` line naming what changed.
A Think folder that sampled nothing (gen_synth.py --skip_solved when every question has a kept trace: its
manifest.json says num_questions 0, no e0.json) is skipped with one line, nothing written.
"""
import argparse
import gc
import os
import time

from tpt.io import DataError, read_questions, sample_paths
from tpt.manifest import read_manifest
from tpt.scoring import format_summary, load_samples_dir, score_loaded
from tpt.stage import EVMATH_MANIFEST, MANIFEST, REDO, SCORER, Stage, fail, skip


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--samples_dir", "--output_dir", "--outputdir", dest="samples_dir", default="samples/math_train",
                   help="folder with e0.json ... e{N-1}.json, or a root whose subfolders each hold them")
    p.add_argument("--questions", "--answer_path", "--math", dest="questions", default="data/gsm8ktrain.json",
                   help="question file with the gold answers (TPT JSON with idt or id, JSONL, or GSM8K jsonl)")
    p.add_argument("--num_samples", "--numsamples", dest="num_samples", type=int, default=None,
                   help="samples per question: reads e0 .. e{N-1} (default: the num_samples of the folder's "
                   "manifest.json, as Think wrote it, else every e{j}.json there)")
    p.add_argument("--k", type=int, nargs="*", default=[], help="extra k for maj@k (pass@k is written for every k <= N)")
    p.add_argument("--max_per_question", type=int, default=1,
                   help="kept traces per question in correct_answers.json (1 = the original recipe; 0 = all)")
    p.add_argument("--strict_only", action="store_true", help="keep only traces that end with `#### <number>`")
    p.add_argument("--keep_truncated", action="store_true",
                   help="keep correct traces that hit the token limit (finish_reason = length)")
    return p


def find_sample_folders(samples_dir):
    """[samples_dir] when it holds e0.json, else its subfolders that do (sorted)."""
    if os.path.isfile(os.path.join(samples_dir, "e0.json")):
        return [samples_dir]
    if not os.path.isdir(samples_dir):
        raise DataError(f"{samples_dir}: samples folder not found")
    subs = sorted(os.path.join(samples_dir, d) for d in os.listdir(samples_dir)
                  if os.path.isfile(os.path.join(samples_dir, d, "e0.json")))
    if not subs:
        raise DataError(f"{samples_dir}: no e0.json here nor in any subfolder")
    return subs


def samples_in(folder):
    """How many samples per question a folder holds: its Think manifest's num_samples, else its e0 .. e{N-1}.json."""
    manifest = read_manifest(folder, MANIFEST)
    if isinstance(manifest, dict) and isinstance(manifest.get("num_samples"), int):
        return manifest["num_samples"]
    n = 0
    while os.path.isfile(os.path.join(folder, f"e{n}.json")):
        n += 1
    return n


def sampled_nothing(folder):
    """True for a Think folder whose pass had no question left to sample (manifest.json: num_questions 0)."""
    manifest = read_manifest(folder, MANIFEST) if os.path.isdir(folder) else None
    return (isinstance(manifest, dict) and manifest.get("num_questions") == 0
            and not os.path.isfile(os.path.join(folder, "e0.json")))


def main(argv=None):
    args = build_parser().parse_args(argv)
    # Scoring allocates about a million objects and makes no reference cycles: without this the cyclic
    # collector rescans them again and again for nothing (about 15% of the run on 74,730 samples).
    gc.disable()
    if args.max_per_question < 0:
        fail(f"--max_per_question must be 0 (all) or more, got {args.max_per_question}")
    try:
        if sampled_nothing(args.samples_dir):
            skip(args.samples_dir, "sampled nothing (every question has a kept trace)")
            return
        # What the scores depend on: these settings, the content (not the names) of the files read, and the
        # scorer's own code (an upgrade that reads answers otherwise scores again).
        settings = {"k": args.k, "max_per_question": args.max_per_question, "strict_only": args.strict_only,
                    "keep_truncated": args.keep_truncated}
        stages = []
        for d in find_sample_folders(args.samples_dir):
            n = args.num_samples or samples_in(d)
            stages.append(Stage("scoring", d, EVMATH_MANIFEST, settings | {"num_samples": n}, code=SCORER,
                                on_change=REDO, inputs={"answer": args.questions, "samples": sample_paths(d, n)}))
        todo = [stage for stage in stages if not stage.finished()]
        questions = read_questions(args.questions) if todo else []
        loaded = [(stage, *load_samples_dir(stage.folder, questions, stage.settings["num_samples"]))
                  for stage in todo]
    except DataError as e:
        fail(str(e))
    for stage, sampled, sample_files in loaded:
        start = time.time()
        summary = score_loaded(stage.folder, sampled, sample_files, args.k, args.max_per_question,
                               args.strict_only, args.keep_truncated)
        stage.finish(vars(args), seconds=round(time.time() - start, 3), summary=summary)
        print(f"{stage.folder}: scored.json, pass_at_k_results.json/.csv, correct_answers.json")
        print(f"{stage.folder}: {format_summary(summary)}")

if __name__ == "__main__":
    main()
