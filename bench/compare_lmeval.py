"""The real lm-evaluation-harness against `gen_eval.py --task ...`, question by question.

    .venv-bench/bin/pip install torch==2.13.0 && .venv-bench/bin/pip install -r bench/requirements.txt
    python bench/compare_lmeval.py --tasks gsm8k gsm8k_cot --limit 50 --out out/compare_lmeval

For each task, on the same model and the first --limit questions of GSM8K's test split:
  1. the harness (lm-eval 0.4.13, from its own venv, --lm_eval) runs a copy of its own task yaml whose data come
     from the local GSM8K files (`dataset_path: json`, offline), greedy, batch size 1, writing every sample
     (--log_samples: the exact prompt it sent, its completion, both filters' answers and scores);
  2. gen_eval.py runs the same task on the same questions (greedy, one sample, float32 like the harness);
  3. per question: the prompt's token ids equal, the completion equal (else the first differing character
     and token shown), each filter's extracted answer and score equal, and our own scorer's answer beside.
Writes OUT/TASK/comparison.json and prints one table line per task and every disagreement. Steps already done
(the harness's samples file, gen_eval's finished folder) are not redone, so a run killed in step 2 resumes.
lm_eval is a bench-only dependency: this script only runs it as a program.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tpt.extract import LMEVAL_FILTERS, extract_answer, is_correct  # noqa: E402
from tpt.io import read_json, read_questions, write_json  # noqa: E402
from tpt.models import resolve_model  # noqa: E402
from tpt.prompt import LMEVAL_MAX_GEN_TOKS, encode_task_prompt, fewshot_examples, task_prompt  # noqa: E402

# The harness's task file for each of our tasks (lm_eval/tasks/gsm8k/ in lm-eval 0.4.13).
HARNESS_YAML = {"gsm8k": "gsm8k.yaml", "gsm8k_cot": "gsm8k-cot.yaml"}
HARNESS_FILTERS = ("strict-match", "flexible-extract")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["gsm8k", "gsm8k_cot"], choices=sorted(HARNESS_YAML))
    p.add_argument("--limit", type=int, default=50, help="the first LIMIT test questions")
    p.add_argument("--model_name", default="smollm2-135m", help="embedded alias, hub id or local folder")
    p.add_argument("--gsm8k_dir", default=os.path.join(ROOT, "..", "shared", "data", "gsm8k"),
                   help="GSM8K's train.jsonl and test.jsonl")
    p.add_argument("--lm_eval", default=os.path.join(ROOT, ".venv-bench", "bin", "lm_eval"),
                   help="the harness's command, in its own venv")
    p.add_argument("--max_gen_toks", type=int, default=LMEVAL_MAX_GEN_TOKS,
                   help="reply token limit, both sides (the harness's default; another value goes to it as gen_kwargs)")
    p.add_argument("--batch_size", type=int, default=1,
                   help="the harness's batch (1: no padding, so its numbers are a single sequence's)")
    p.add_argument("--harness_parts", type=int, default=1,
                   help="1: `lm_eval run` itself; N: the harness's own objects in N processes, each a share of the "
                   "documents (bench/lmeval_generate.py; same prompts, same shots), for shared cores")
    p.add_argument("--threads", type=int, default=1,
                   help="OMP_NUM_THREADS of both sides (one each: on shared cores, more threads than cores stall)")
    p.add_argument("--apply_chat_template", action="store_true", help="both sides: the model's chat template")
    p.add_argument("--prompts_only", action="store_true",
                   help="only the prompts, no model run: the harness's (bench/lmeval_prompts.py) against ours, "
                   "text and token ids, for the first --limit questions (1319: the whole test split)")
    p.add_argument("--out", default="out/compare_lmeval")
    return p


# ---------------------------------------------------------------- the harness

def harness_task_dir():
    """The installed harness's gsm8k task folder, asked of its own interpreter."""
    python = os.path.join(os.path.dirname(build_parser().get_default("lm_eval")), "python")
    code = "import lm_eval, os; print(os.path.join(os.path.dirname(lm_eval.__file__), 'tasks', 'gsm8k'))"
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def write_local_yaml(task, task_dir, gsm8k_dir, out_dir):
    """A copy of the harness's own task yaml, renamed tpt_local_TASK, its data the local jsonl files. Nothing
    else changes (prompt, shots, filters, generation kwargs are the harness's)."""
    import yaml

    with open(os.path.join(task_dir, HARNESS_YAML[task])) as f:
        config = yaml.safe_load(f)
    config["task"] = f"tpt_local_{task}"
    config.pop("tag", None)
    config["dataset_path"] = "json"
    config.pop("dataset_name", None)
    config["dataset_kwargs"] = {"data_files": {split: os.path.abspath(os.path.join(gsm8k_dir, f"{split}.jsonl"))
                                               for split in ("train", "test")}}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"tpt_local_{task}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def harness_samples(out_dir, task):
    """The harness's per-sample files for `task` under out_dir (one, or one per part of a run split with
    --samples: gsm8k_cot's fixed shots make any split of its documents give the same prompts)."""
    return sorted(glob.glob(os.path.join(out_dir, "**", f"samples_tpt_local_{task}_*.jsonl"), recursive=True))


def run_harness(args, task, model_path, out_dir):
    """The harness's per-sample records for `task` (runs it unless its samples file is there)."""
    harness_dir = os.path.join(out_dir, "harness")
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=str(args.threads))
    yaml_dir = os.path.join(out_dir, "harness_tasks")
    if not harness_samples(out_dir, task) and args.harness_parts > 1:
        write_local_yaml(task, harness_task_dir(), args.gsm8k_dir, yaml_dir)
        python = os.path.join(os.path.dirname(args.lm_eval), "python")
        runs = [subprocess.Popen([python, os.path.join(ROOT, "bench", "lmeval_generate.py"), "--include_path",
                                  yaml_dir, "--task", f"tpt_local_{task}", "--limit", str(args.limit), "--part",
                                  str(part), "--parts", str(args.harness_parts), "--model", model_path, "--out",
                                  os.path.join(f"{harness_dir}_part{part}", f"samples_tpt_local_{task}_part{part}.jsonl")],
                                 env=env) for part in range(args.harness_parts)]
        if any(run.wait() for run in runs):
            sys.exit(f"error: a harness part of {task} failed (its log is above)")
    if not harness_samples(out_dir, task):
        write_local_yaml(task, harness_task_dir(), args.gsm8k_dir, yaml_dir)
        command = [args.lm_eval, "run", "--model", "hf",
                   "--model_args", f"pretrained={model_path},dtype=float32",
                   "--tasks", f"tpt_local_{task}", "--include_path", yaml_dir, "--limit", str(args.limit),
                   "--batch_size", str(args.batch_size), "--device", "cpu",
                   "--log_samples", "--output_path", harness_dir]
        if args.max_gen_toks != LMEVAL_MAX_GEN_TOKS:
            command += ["--gen_kwargs", f"max_gen_toks={args.max_gen_toks}"]
        if args.apply_chat_template:
            command.append("--apply_chat_template")
        print("harness:", " ".join(command), flush=True)
        subprocess.run(command, check=True, env=env)
    records = []
    for path in harness_samples(out_dir, task):
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


# ---------------------------------------------------------------- ours

def run_ours(args, task, out_dir):
    """gen_eval.py's finished folder for `task` on the same questions (runs it unless finished)."""
    folder = os.path.join(out_dir, "gen_eval")
    if os.path.isfile(os.path.join(folder, "manifest.json")):  # finished (by this script or by hand, same flags)
        return folder
    command = [sys.executable, os.path.join(ROOT, "gen_eval.py"), "--task", task, "--model_name", args.model_name,
               "--questions", os.path.join(args.gsm8k_dir, "test.jsonl"), "--limit", str(args.limit),
               "--fewshot_file", os.path.join(args.gsm8k_dir, "train.jsonl"), "--num_samples", "1",
               "--temperature", "0", "--max_tokens", str(args.max_gen_toks), "--dtype", "float32",
               "--backend", "hf", "--samples_dir", folder]
    if args.apply_chat_template:
        command.append("--apply_chat_template")
    print("ours:", " ".join(command), flush=True)
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
    return folder


# ---------------------------------------------------------------- comparing

def first_difference(a, b):
    """Index of the first character where two strings differ (None when equal)."""
    if a == b:
        return None
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def merge_filters(records, questions):
    """The harness writes one record per (doc, filter): one dict per test question (its row found by the record's
    own document, so a run split with --samples maps back) with each filter's answer and score."""
    row_of = {q["question"]: i for i, q in enumerate(questions)}
    docs = {}
    for rec in records:
        row = row_of[rec["doc"]["question"]]
        doc = docs.setdefault(row, {"doc_id": row, "arguments": rec["arguments"],
                                              "resps": rec["resps"], "target": rec["target"], "filters": {}})
        doc["filters"][rec["filter"]] = {"answer": rec["filtered_resps"][0], "exact_match": rec["exact_match"]}
    return [docs[k] for k in sorted(docs)]


def finished_folders(out_dir):
    """OUT/TASK/gen_eval and any other finished gen_eval_* folder there (a run continued on more questions with
    their own question file, whose idt keep the test split's rows)."""
    return sorted(d for d in glob.glob(os.path.join(out_dir, "gen_eval*"))
                  if os.path.isfile(os.path.join(d, "manifest.json")))


def compare(task, harness_docs, folders, questions, tokenizer, apply_chat_template, shots_by_idt):
    ours = {r["qnum"]: r for d in folders for r in read_json(os.path.join(d, "e0.json"))}
    scored = {r["qnum"]: r for d in folders for r in read_json(os.path.join(d, "scored.json"))}
    rows = []
    for doc in harness_docs:
        q = questions[doc["doc_id"]]
        if q["idt"] not in ours:
            continue
        prompt_text = doc["arguments"]["gen_args_0"]["arg_0"]
        their_ids = encode_task_prompt(tokenizer, prompt_text)
        our_text = task_prompt(tokenizer, dict(q, shots=shots_by_idt.get(q["idt"], [])), task=task,
                               apply_chat_template=apply_chat_template)
        our_ids = encode_task_prompt(tokenizer, our_text)
        theirs, mine = doc["resps"][0][0], ours[q["idt"]]["solution"]
        row = {"doc_id": doc["doc_id"], "idt": q["idt"], "prompt_tokens": len(their_ids),
               "prompt_text_equal": prompt_text == our_text, "prompt_tokens_equal": their_ids == our_ids,
               "completion_equal": theirs == mine, "target_harness": doc["target"], "solnum": q["solnum"]}
        diff = first_difference(theirs, mine)
        if diff is not None:
            tok = first_difference(tokenizer(theirs, add_special_tokens=False)["input_ids"],
                                   tokenizer(mine, add_special_tokens=False)["input_ids"])
            row["first_difference"] = {"char": diff, "token": tok, "harness": theirs[max(0, diff - 60):diff + 60],
                                       "ours": mine[max(0, diff - 60):diff + 60]}
        scores_equal = True
        for name, mode in LMEVAL_FILTERS[task].items():
            their = doc["filters"][name]
            our_answer = extract_answer(mine, mode)
            our_score = float(is_correct(our_answer, q["solnum"], mode))
            row[name] = {"harness": their["answer"], "ours": our_answer if our_answer is not None else "[invalid]",
                         "harness_score": their["exact_match"], "our_score": our_score}
            # Our filter on the harness's own completion: the filter alone, whatever the completions did.
            row[name]["ours_on_harness_completion"] = extract_answer(theirs, mode) or "[invalid]"
            row[name]["filter_equal"] = row[name]["ours_on_harness_completion"] == their["answer"]
            scores_equal &= our_score == their["exact_match"]
        row["scores_equal"] = scores_equal
        row["our_answer"] = scored[q["idt"]]["final_answer"]
        row["our_correct"] = scored[q["idt"]]["correct"]
        rows.append(row)
    return rows


def totals(rows):
    n = len(rows)
    out = {"questions": n}
    for key in ("prompt_text_equal", "prompt_tokens_equal", "completion_equal", "scores_equal"):
        out[key] = sum(r[key] for r in rows)
    for name in HARNESS_FILTERS:
        out[f"{name}_answers_equal"] = sum(r[name]["harness"] == r[name]["ours"] for r in rows)
        out[f"{name}_filter_equal_on_harness_completion"] = sum(r[name]["filter_equal"] for r in rows)
        out[f"{name}_harness_exact_match"] = sum(r[name]["harness_score"] for r in rows) / n
        out[f"{name}_our_exact_match"] = sum(r[name]["our_score"] for r in rows) / n
    out["our_answer_correct"] = sum(r["our_correct"] for r in rows) / n
    return out


def harness_prompts(args, task, out_dir):
    """The harness's prompts for the first --limit documents, built by it without a model (lmeval_prompts.py)."""
    path = os.path.join(out_dir, f"harness_prompts_{args.limit}.jsonl")
    if not os.path.isfile(path):
        yaml_dir = os.path.join(out_dir, "harness_tasks")
        write_local_yaml(task, harness_task_dir(), args.gsm8k_dir, yaml_dir)
        python = os.path.join(os.path.dirname(args.lm_eval), "python")
        command = [python, os.path.join(ROOT, "bench", "lmeval_prompts.py"), "--include_path", yaml_dir,
                   "--task", f"tpt_local_{task}", "--limit", str(args.limit), "--out", path]
        if args.apply_chat_template:
            command += ["--apply_chat_template", resolve_model(args.model_name)]
        env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def compare_prompts(task, prompts, questions, train, tokenizer, apply_chat_template):
    """Per document: our prompt text and ids against the harness's, and its stop strings against ours."""
    from tpt.prompt import stop_strings

    shots = fewshot_examples(task, questions, train)
    rows = []
    for rec in prompts:
        q = questions[rec["doc_id"]]
        ours = task_prompt(tokenizer, dict(q, shots=shots[rec["doc_id"]]), task=task,
                           apply_chat_template=apply_chat_template)
        rows.append({"doc_id": rec["doc_id"], "text_equal": ours == rec["prompt"],
                     "tokens_equal": encode_task_prompt(tokenizer, ours) == encode_task_prompt(tokenizer, rec["prompt"]),
                     "until_equal": stop_strings(task) == rec["until"],
                     "first_difference": first_difference(rec["prompt"], ours)})
    return rows


def main():
    args = build_parser().parse_args()
    from transformers import AutoTokenizer

    model_path = resolve_model(args.model_name)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    questions = read_questions(os.path.join(args.gsm8k_dir, "test.jsonl"))[:args.limit]
    train = read_questions(os.path.join(args.gsm8k_dir, "train.jsonl"))
    report = {}
    if args.prompts_only:
        for task in args.tasks:
            rows = compare_prompts(task, harness_prompts(args, task, os.path.join(args.out, task)), questions, train,
                                   tokenizer, args.apply_chat_template)
            t = {k: sum(r[k] for r in rows) for k in ("text_equal", "tokens_equal", "until_equal")}
            report[task] = {"questions": len(rows)} | t
            print(f"{task} prompts: questions {len(rows)} | text equal {t['text_equal']} | token ids equal "
                  f"{t['tokens_equal']} | stop strings equal {t['until_equal']}")
            for r in rows:
                if not (r["text_equal"] and r["tokens_equal"]):
                    print(f"  doc {r['doc_id']}: first difference at character {r['first_difference']}")
        write_json(os.path.join(args.out, f"prompts_{args.limit}.json"), report)
        return
    for task in args.tasks:
        out_dir = os.path.join(args.out, task)
        harness = merge_filters(run_harness(args, task, model_path, out_dir), questions)
        run_ours(args, task, out_dir)
        folder = finished_folders(out_dir)
        shots_by_idt = {q["idt"]: shots for q, shots in zip(questions, fewshot_examples(task, questions, train))}
        rows = compare(task, harness, folder, questions, tokenizer, args.apply_chat_template, shots_by_idt)
        report[task] = {"totals": totals(rows), "rows": rows}
        write_json(os.path.join(out_dir, "comparison.json"), report[task])
        t = report[task]["totals"]
        print(f"{task}: questions {t['questions']} | prompt text equal {t['prompt_text_equal']} | prompt tokens "
              f"equal {t['prompt_tokens_equal']} | completion equal {t['completion_equal']} | scores equal "
              f"{t['scores_equal']} | strict-match {t['strict-match_harness_exact_match']:.3f} vs "
              f"{t['strict-match_our_exact_match']:.3f} | flexible-extract "
              f"{t['flexible-extract_harness_exact_match']:.3f} vs {t['flexible-extract_our_exact_match']:.3f}")
        for r in rows:
            if not (r["prompt_tokens_equal"] and r["completion_equal"] and r["scores_equal"]):
                print(f"  doc {r['doc_id']}: prompt tokens equal {r['prompt_tokens_equal']}, completion equal "
                      f"{r['completion_equal']}, scores equal {r['scores_equal']}; "
                      f"{json.dumps(r.get('first_difference'), ensure_ascii=False)}; "
                      + "; ".join(f"{n} {r[n]['harness']!r}/{r[n]['ours']!r}" for n in HARNESS_FILTERS))
    write_json(os.path.join(args.out, "comparison.json"), {t: report[t]["totals"] for t in report})
    print(f"wrote {args.out}/comparison.json")


if __name__ == "__main__":
    main()
