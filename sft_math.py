"""Train: fine-tune a model on its own kept reasoning traces (TRL SFTTrainer), saving a folder Think loads next.

One CPU (the embedded model, W&B off):
    python sft_math.py --model_name_or_path smollm2-135m --train_data_path data/next/train.json \
        --eval_data_path data/next/eval.json --output_dir out/sft --report_to none

Many GPUs / nodes (see notes/readme_train.md for FSDP and DeepSpeed ZeRO-3):
    accelerate launch --config_file configs/accelerate/ddp.yaml sft_math.py \
        --model_name_or_path google/gemma-2-2b-it --train_data_path data/next/train.json --output_dir out/gemma-tpt

Each trace is trained as prompt (the same chat prompt Think sampled with, tpt.prompt) + completion (the solution)
+ the model's end-of-turn token; the prompt carries no loss. Bad input fails with one line before any model loads.
The output folder appears only when complete (manifest.json inside); checkpoints go to OUTPUT_DIR.work/.
"""
import argparse

from tpt.prompt import TEMPLATES


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = p.add_argument_group("data and model")
    data.add_argument("--model_name_or_path", default="smollm2-135m", help="embedded alias, hub id or local folder")
    data.add_argument("--train_data_path", required=True, help="kept traces {idt|id, question, solution, solnum} (JSON/JSONL)")
    data.add_argument("--eval_data_path", default=None, help="held-out traces for eval loss; no question may also be in train")
    data.add_argument("--output_dir", default="out/sft", help="the model folder to write (replaced when the run finishes)")
    data.add_argument("--template", default="tpt", choices=sorted(TEMPLATES), help="prompt wording, as Think used it")
    data.add_argument("--max_length", type=int, default=1600, help="longer traces are left out (never truncated)")
    data.add_argument("--trust_remote_code", action="store_true", help="allow model code from the hub")

    opt = p.add_argument_group("optimisation (paper defaults)")
    opt.add_argument("--learning_rate", type=float, default=1e-6, help="peak learning rate (the paper's)")
    opt.add_argument("--num_train_epochs", type=float, default=1.0, help="passes over the train traces")
    opt.add_argument("--max_steps", type=int, default=-1, help="optimizer steps; overrides epochs when > 0")
    opt.add_argument("--per_device_train_batch_size", type=int, default=2, help="traces per micro-batch per process")
    opt.add_argument("--per_device_eval_batch_size", type=int, default=2, help="traces per eval batch per process")
    opt.add_argument("--gradient_accumulation_steps", type=int, default=4, help="micro-batches per optimizer step")
    opt.add_argument("--lr_scheduler_type", default="cosine", help="any transformers scheduler name")
    opt.add_argument("--warmup_ratio", type=float, default=0.1, help="fraction of the steps spent warming up")
    opt.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
    opt.add_argument("--seed", type=int, default=42, help="data order, dropout and LoRA init")
    opt.add_argument("--bf16", default="auto", choices=["auto", "true", "false"],
                     help="bf16 autocast over float32 weights; auto = on where a GPU supports it")
    opt.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory")
    opt.add_argument("--batching", default="grouped", choices=["grouped", "padding", "padding_free"],
                     help="grouped: padded batches of similar-length traces; padding: random order, padded; "
                     "padding_free: a batch is one row of whole traces, none attending to another")

    run = p.add_argument_group("logging and checkpoints")
    run.add_argument("--report_to", default="wandb", choices=["wandb", "none"],
                     help="wandb needs a login, WANDB_API_KEY or WANDB_MODE=offline")
    run.add_argument("--wandb_project", default=None, help="else $WANDB_PROJECT, else 'tpt'")
    run.add_argument("--run_name", default=None, help="else $WANDB_NAME, else the output folder's name")
    run.add_argument("--logging_steps", type=int, default=10, help="log loss every N optimizer steps")
    run.add_argument("--eval_steps", type=int, default=50, help="eval loss every N steps (with --eval_data_path)")
    run.add_argument("--save_steps", type=int, default=100, help="checkpoint every N steps into OUTPUT_DIR.work/")
    run.add_argument("--save_total_limit", type=int, default=2, help="checkpoints kept")
    run.add_argument("--resume_from_checkpoint", nargs="?", const="last", default=None,
                     help="continue a killed run: a checkpoint folder, or no value for the last one in OUTPUT_DIR.work/")

    lora = p.add_argument_group("LoRA (PEFT); the merged model is saved too")
    lora.add_argument("--use_peft", action="store_true", help="train a LoRA adapter instead of all weights")
    lora.add_argument("--lora_r", type=int, default=16, help="LoRA rank")
    lora.add_argument("--lora_alpha", type=int, default=32, help="LoRA scale numerator")
    lora.add_argument("--lora_dropout", type=float, default=0.05, help="dropout on the LoRA path")
    lora.add_argument("--lora_target_modules", nargs="+", default=["all-linear"], help="module names, or all-linear")
    return p


def main(argv=None):
    from tpt.io import DataError, fail

    args = build_parser().parse_args(argv)
    try:
        from tpt.train import train

        train(args)
    except DataError as e:
        fail(str(e))


if __name__ == "__main__":
    main()
