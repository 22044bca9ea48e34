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
removed then unless --keep_checkpoints. Run again on a folder holding its finished run, it prints
`skip: OUTPUT_DIR is trained` when the settings and the data's content are the same, and refuses with one line
naming what changed otherwise.
"""


def build_parser():
    from trl import TrlParser

    from tpt.train_args import ModelArguments, ScriptArguments, TrainConfig

    return TrlParser((ScriptArguments, TrainConfig, ModelArguments), description=__doc__.split("\n")[0])


def main(argv=None):
    import shutil
    import time
    from dataclasses import asdict

    from tpt.io import DataError, fail

    started = time.time()
    script_args, training_args, model_args = build_parser().parse_args_and_config(argv)
    # The flags as parsed, before configure adapts them, for the manifest.
    settings = {**asdict(script_args), **asdict(model_args), **training_args.to_dict()}
    output_dir, main_process = training_args.output_dir, training_args.process_index == 0
    try:
        from trl import get_peft_config, get_quantization_config

        from tpt.manifest import finished_run
        from tpt.prompt import check_template
        from tpt.train import train
        from tpt.train_data import data_files, read_train_data
        from tpt.train_save import save_model_folder
        from tpt.train_setup import check_launch, train_fingerprint

        # Check, before any model loads: the template, the data, the launch.
        check_template(script_args.template)
        train_records, eval_records = read_train_data(script_args.train_data_path, script_args.eval_data_path)
        check_launch(training_args)
        data = data_files(script_args.train_data_path, script_args.eval_data_path, len(train_records), len(eval_records))

        # Skip a folder holding this very run; refuse one holding a run made otherwise (finished_run raises).
        fingerprint = train_fingerprint(script_args, training_args, model_args, data)
        if finished_run(output_dir, fingerprint) is not None:
            if main_process:
                print(f"skip: {output_dir} is trained (same settings and data)")
            return

        run = train(
            train_records, eval_records, training_args,
            model_name_or_path=model_args.model_name_or_path,
            model_revision=model_args.model_revision,
            template=script_args.template,
            dtype=model_args.dtype,
            attn_implementation=model_args.attn_implementation,
            peft_config=get_peft_config(model_args),
            quantization_config=get_quantization_config(model_args),
            wandb_project=script_args.wandb_project,
        )

        fields = {**run.fields, "data": data, "fingerprint": fingerprint,
                  "checkpoints_dir": run.work_dir if script_args.keep_checkpoints else None,
                  "wall_seconds": time.time() - started}  # measured before the save, which the manifest closes
        save_model_folder(run.trainer, output_dir, run.base_path, run.eot_id, fields, settings, run.weight_dtype,
                          training_args.trust_remote_code)
        if main_process and not script_args.keep_checkpoints:
            # The model folder is complete: a checkpoint (weights + optimizer state, ~12 bytes a parameter) is dead weight.
            shutil.rmtree(run.work_dir, ignore_errors=True)

        if main_process:
            print(f"train: {fields['global_step']} steps, loss {fields['train_loss']:.4f}, {fields['train_tokens']} "
                  f"tokens, {fields['tokens_per_second']:.1f} tokens/s, {fields['evaluations']} evaluation(s) "
                  f"{fields['eval_seconds']:.0f} s, {fields['wall_seconds']:.0f} s in all; "
                  f"model → {output_dir}")
        run.trainer.end()  # finish W&B, leave the process group
    except DataError as e:
        fail(str(e))


if __name__ == "__main__":
    main()
