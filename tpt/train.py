"""Train: TRL's SFTTrainer over checked kept traces, from a fresh start or a checkpoint; the trained model stays in
the trainer for sft_math.py to save (tpt.train_save).

The parts, each its own module: tpt/train_data.py (trace files → checked, tokenized examples), tpt/train_setup.py
(launch checks, the run's fingerprint, TRL's SFTConfig adapted to the run), tpt/train_save.py (the model folder).
The flags (TRL's dataclasses with TPT's defaults) are in tpt/train_args.py; train() takes TRL's SFTConfig and
explicit values. Every rank runs the same code on the same data; only the main process prints.
"""
import os
from dataclasses import dataclass
from typing import Any

from tpt.io import read_json
from tpt.models import load_generation_config, resolve_model
from tpt.train_data import build_dataset, end_of_turn_id, prepare_examples
from tpt.train_setup import (configure, find_checkpoint, model_load_kwargs, optimizer_steps, spread_intervals,
                              weight_dtype)


@dataclass
class TrainedRun:
    """A finished trainer.train() and what saving its model needs."""

    trainer: Any  # trl.SFTTrainer, holding the trained model
    base_path: str  # the folder the model was loaded from (a LoRA adapter is merged into it)
    eot_id: int  # the end-of-turn token the saved model must stop on
    weight_dtype: str
    work_dir: str  # OUTPUT_DIR.work/, the checkpoints
    fields: dict  # for manifest.json


def work_folder(output_dir):
    """Where a run's checkpoints go, beside its model folder."""
    return os.path.abspath(output_dir) + ".work"


def train(train_records, eval_records, training_args, *, model_name_or_path="smollm2-135m", model_revision="main",
          template="tpt", dtype=None, attn_implementation=None, peft_config=None, quantization_config=None,
          wandb_project=None):
    """Fine-tune on records (tpt.train_data.read_train_data) with TRL; returns a TrainedRun.

    training_args is TRL's SFTConfig (tpt.train_args.TrainConfig as sft_math.py parses it); it is adapted in place
    (configure): checkpoints go to OUTPUT_DIR.work/, whence --resume_from_checkpoint continues a killed run.
    """
    output_dir = training_args.output_dir
    work_dir = work_folder(output_dir)
    checkpoint = find_checkpoint(training_args.resume_from_checkpoint, work_dir)
    if "wandb" in training_args.report_to:
        if wandb_project:
            os.environ["WANDB_PROJECT"] = wandb_project
        os.environ.setdefault("WANDB_PROJECT", "tpt")

    from transformers import AutoConfig, AutoTokenizer
    from trl import SFTTrainer

    trust = training_args.trust_remote_code
    model_path = resolve_model(model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path, revision=model_revision, trust_remote_code=trust)
    generation_config = load_generation_config(model_path, model_revision)
    eot_id = end_of_turn_id(tokenizer, generation_config, template)
    config = AutoConfig.from_pretrained(model_path, revision=model_revision, trust_remote_code=trust)
    dtype = weight_dtype(dtype, peft_config is not None, training_args.bf16)
    load_kwargs = model_load_kwargs(config, dtype, attn_implementation, model_revision, quantization_config is not None, trust)
    max_length = configure(training_args, work_dir, output_dir, bool(eval_records), load_kwargs)

    trainer = SFTTrainer(
        model=model_path,
        args=training_args,
        train_dataset=build_dataset(train_records, template),
        eval_dataset=build_dataset(eval_records, template) if eval_records else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        quantization_config=quantization_config,
    )
    trainer.train_dataset, dropped = prepare_examples(
        trainer.train_dataset, tokenizer, train_records, template, eot_id, max_length, "train"
    )
    if eval_records:
        trainer.eval_dataset, _ = prepare_examples(
            trainer.eval_dataset, tokenizer, eval_records, template, eot_id, max_length, "eval"
        )
    spread_intervals(training_args, optimizer_steps(training_args, len(trainer.train_dataset)))
    attention = trainer.accelerator.unwrap_model(trainer.model).config._attn_implementation
    if trainer.accelerator.is_main_process:
        print(f"train: {len(trainer.train_dataset)} traces ({dropped} longer than --max_length {max_length} left out), "
              f"{len(eval_records)} eval traces, {trainer.accelerator.num_processes} process(es), {dtype} weights, "
              f"bf16 autocast {'on' if training_args.bf16 else 'off'}, {attention} attention, "
              f"end-of-turn {tokenizer.convert_ids_to_tokens(eot_id)!r}")

    tokens_before = read_json(os.path.join(checkpoint, "trainer_state.json")).get("num_input_tokens_seen", 0) if checkpoint else 0
    result = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = result.metrics["train_runtime"]
    tokens = trainer.state.num_input_tokens_seen  # real tokens of all processes, carried over a resume
    fields = {
        "base_model": {"name": model_name_or_path, "path": model_path},
        "train_examples": len(trainer.train_dataset),
        "dropped_longer_than_max_length": dropped,
        "end_of_turn_token": tokenizer.convert_ids_to_tokens(eot_id),
        "weight_dtype": dtype,
        "bf16_autocast": bool(training_args.bf16),
        "attn_implementation": attention,
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "warmup_steps": training_args.get_warmup_steps(trainer.state.max_steps),
        "train_loss": result.training_loss,
        "best_checkpoint": trainer.state.best_model_checkpoint if training_args.load_best_model_at_end else None,
        "train_tokens": int(tokens),
        "tokens_per_second": (tokens - tokens_before) / runtime if runtime else None,  # this launch only
        "train_runtime_seconds": runtime,  # evaluations included
        "evaluations": sum("eval_runtime" in entry for entry in trainer.state.log_history),
        "eval_seconds": sum(entry.get("eval_runtime", 0.0) for entry in trainer.state.log_history),
        "resumed_from": checkpoint,
    }
    return TrainedRun(trainer, model_path, eot_id, dtype, work_dir, fields)
