"""Train: fine-tune a model on its own kept reasoning traces (TRL SFTTrainer), saving a folder Think loads next.

One CPU (the embedded model, W&B off):
    python sft_math.py --model_name_or_path smollm2-135m --train_data_path data/next/train.json \
        --eval_data_path data/next/eval.json --output_dir out/sft --report_to none

Many GPUs / nodes (README "GPUs": FSDP for 9B, DeepSpeed ZeRO-3 with optimizer offload for 70B):
    accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 8 sft_math.py \
        --model_name_or_path google/gemma-2-9b-it --train_data_path data/next/train.json --output_dir out/gemma-tpt

The flags are TRL's own (SFTConfig, TrainingArguments, ModelConfig, parsed by TrlParser as trl/scripts/sft.py
does) with the paper's defaults, plus TPT's script arguments; `--config recipe.yaml` sets any of them.
Each trace is trained as prompt (the same chat prompt Think sampled with, tpt.prompt) + completion (the solution)
+ the model's end-of-turn token; the prompt carries no loss. Bad input fails with one line before any model loads.
The output folder appears only when complete (manifest.json inside); checkpoints go to OUTPUT_DIR.work/, which is
removed then unless --keep_checkpoints.
"""


def build_parser():
    from trl import TrlParser

    from tpt.train_args import ModelArguments, ScriptArguments, TrainConfig

    return TrlParser((ScriptArguments, TrainConfig, ModelArguments), description=__doc__.split("\n")[0])


def main(argv=None):
    from dataclasses import asdict

    from tpt.io import DataError, fail

    script_args, training_args, model_args = build_parser().parse_args_and_config(argv)
    try:
        from trl import get_peft_config, get_quantization_config

        from tpt.train import train

        train(
            script_args.train_data_path, training_args,
            eval_data_path=script_args.eval_data_path,
            model_name_or_path=model_args.model_name_or_path,
            model_revision=model_args.model_revision,
            template=script_args.template,
            dtype=model_args.dtype,
            attn_implementation=model_args.attn_implementation,
            peft_config=get_peft_config(model_args),
            quantization_config=get_quantization_config(model_args),
            keep_checkpoints=script_args.keep_checkpoints,
            wandb_project=script_args.wandb_project,
            run_args={**asdict(script_args), **asdict(model_args), **training_args.to_dict()},
        )
    except DataError as e:
        fail(str(e))


if __name__ == "__main__":
    main()
