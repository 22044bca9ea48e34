"""The real harness's prompts for a task, without a model: run under the harness's own venv.

    .venv-bench/bin/python bench/lmeval_prompts.py --include_path out/compare_lmeval/gsm8k/harness_tasks \
        --task tpt_local_gsm8k --limit 1319 --out out/compare_lmeval/gsm8k/harness_prompts.jsonl

Builds the task's requests as simple_evaluate does (the fewshot seed 1234 set on the task, then
build_all_requests over the first --limit test documents, in order) and writes one line per document:
{doc_id, prompt, until, max_gen_toks}. bench/compare_lmeval.py --prompts_only compares them with ours.
"""
import argparse
import json


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--include_path", required=True, help="the folder of the local task yaml")
    p.add_argument("--task", required=True)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--fewshot_seed", type=int, default=1234, help="simple_evaluate's default")
    p.add_argument("--apply_chat_template", default=None,
                   help="a model folder: render the prompts with its chat template (the harness's flag)")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    from lm_eval.tasks import TaskManager, get_task_dict

    task = get_task_dict([args.task], TaskManager(include_path=args.include_path))[args.task]
    task.set_fewshot_seed(seed=args.fewshot_seed)
    chat = {}
    if args.apply_chat_template:  # the harness's own model wrapper renders the chat, as simple_evaluate passes it
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=args.apply_chat_template, device="cpu")
        chat = {"apply_chat_template": True, "chat_template": lm.apply_chat_template}
    task.build_all_requests(limit=args.limit, **chat)
    with open(args.out, "w") as f:
        for inst in sorted(task.instances, key=lambda i: i.doc_id):
            context, gen_kwargs = inst.arguments
            f.write(json.dumps({"doc_id": inst.doc_id, "prompt": context, "until": gen_kwargs.get("until"),
                                "max_gen_toks": gen_kwargs.get("max_gen_toks")}, ensure_ascii=False) + "\n")
    print(f"wrote {len(task.instances)} prompts of {args.task} to {args.out}")


if __name__ == "__main__":
    main()
