"""Train: fine-tune a model on its own kept reasoning traces (TRL SFTTrainer), saving a folder Think loads next.

One CPU (the embedded model, W&B off):
    python sft_math.py --model_name_or_path smollm2-135m --train_traces data/next/train.json \
        --eval_traces data/next/eval.json --output_dir out/sft --report_to none

Many GPUs / nodes (README "GPUs": FSDP for 9B, DeepSpeed ZeRO-3 with optimizer offload for 70B):
    accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 8 sft_math.py \
        --model_name_or_path google/gemma-2-9b-it --train_traces data/next/train.json --output_dir out/gemma-tpt

The flags are TRL's own (SFTConfig, TrainingArguments, ModelConfig, parsed by TrlParser as trl/scripts/sft.py
does) with the paper's defaults, plus TPT's script arguments; `--config recipe.yaml` sets any of them.
Each trace is trained as prompt (the same chat prompt Think sampled with, tpt.prompt) + completion (the solution)
+ the model's end-of-turn token; the prompt carries no loss. Bad input fails with one line before any model loads.
The output folder appears only when complete (manifest.json inside); checkpoints go to OUTPUT_DIR.work/, which is
removed then unless --keep_checkpoints. Run again on a folder holding its finished run, it prints one `skip:`
line when the settings and the data's content are the same, and refuses with one line naming what changed
otherwise (tpt/stage.py).
"""


def build_parser():
    from trl import TrlParser

    from tpt.train_args import ModelArguments, ScriptArguments, TrainConfig

    return TrlParser((ScriptArguments, TrainConfig, ModelArguments), description=__doc__.split("\n")[0])


def main(argv=None):
    from tpt.io import DataError
    from tpt.stage import fail
    from tpt.train import train

    script_args, training_args, model_args = build_parser().parse_args_and_config(argv)
    try:
        fields = train(script_args, training_args, model_args)
    except DataError as e:
        fail(str(e))
    if fields is not None and training_args.process_index == 0:
        print(f"train: {fields['global_step']} steps, loss {fields['train_loss']:.4f}, {fields['train_tokens']} "
              f"tokens, {fields['tokens_per_second']:.1f} tokens/s, {fields['evaluations']} evaluation(s) "
              f"{fields['eval_seconds']:.0f} s, {fields['wall_seconds']:.0f} s in all; "
              f"model → {training_args.output_dir}")


if __name__ == "__main__":
    main()
