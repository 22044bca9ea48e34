"""Part of a harness run, by the harness's own code: run under the harness's venv (lm-eval 0.4.13).

    .venv-bench/bin/python bench/lmeval_generate.py --include_path out/compare_lmeval/gsm8k/harness_tasks \
        --task tpt_local_gsm8k --limit 50 --part 0 --parts 3 --model /root/.cache/tpt/smollm2-135m \
        --out out/compare_lmeval/gsm8k/harness_part0/samples_tpt_local_gsm8k_part0.jsonl

What `lm_eval run --limit L --batch_size 1 --log_samples` does, step by step with the harness's own objects, but
for one share of the documents, so a run can be split over processes without changing any prompt: the task
(its yaml), the fewshot seed set on it and build_all_requests over the first L documents in order (as
simple_evaluate; gsm8k's shots are the harness's draws for every document), HFLM.generate_until on this part's
requests (the harness's transformers model, batch 1), the task's filters (apply_filters) and its metric
(process_results) per filter. (`lm_eval run --samples` cannot split gsm8k: it would draw the shots of a part's
documents as if they came first.) Writes one line per (document, filter) in the shape of --log_samples.
"""
import argparse
import json
import os


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--include_path", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--start", type=int, default=0, help="only documents from this one on (the shots stay the full run's)")
    p.add_argument("--part", type=int, default=0, help="this process's share: documents i with i % parts == part")
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--model", required=True, help="the model folder (--model_args pretrained=...)")
    p.add_argument("--fewshot_seed", type=int, default=1234, help="simple_evaluate's default")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager, get_task_dict

    task = get_task_dict([args.task], TaskManager(include_path=args.include_path))[args.task]
    task.set_fewshot_seed(seed=args.fewshot_seed)
    task.build_all_requests(limit=args.limit)
    mine = [inst for inst in sorted(task.instances, key=lambda i: i.doc_id)
            if inst.doc_id % args.parts == args.part and inst.doc_id >= args.start]
    lm = HFLM(pretrained=args.model, dtype="float32", batch_size=1, device="cpu")
    resps = lm.generate_until(mine)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".raw", "w") as f:  # the completions first: what took the time is kept whatever follows
        f.write(json.dumps({inst.doc_id: resp for inst, resp in zip(mine, resps)}) + "\n")
    for inst, resp in zip(mine, resps):
        inst.resps.append(resp)
    task._instances = mine
    task.apply_filters()
    docs = dict(task.doc_iterator(limit=args.limit))
    with open(args.out, "w") as f:
        for inst in mine:
            doc = docs[inst.doc_id]
            context, gen_kwargs = inst.arguments
            for name, filtered in inst.filtered_resps.items():
                metrics = task.process_results(doc, [filtered])
                f.write(json.dumps({"doc_id": inst.doc_id, "doc": doc, "target": task.doc_to_target(doc),
                                    "arguments": {"gen_args_0": {"arg_0": context, "arg_1": gen_kwargs}},
                                    "resps": [inst.resps], "filtered_resps": [filtered], "filter": name,
                                    **metrics}, ensure_ascii=False, default=str) + "\n")
    print(f"wrote {len(mine)} documents of {args.task} to {args.out}")


if __name__ == "__main__":
    main()
