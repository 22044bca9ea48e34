"""Train's output: one model folder Think loads next (LoRA merged in, stopping on the end-of-turn token, manifest.json
last), which appears under its name only when complete.

trainer.save_model gathers sharded weights (FSDP, ZeRO-3) on all ranks; only the main process writes files.
"""
import os
import shutil

from tpt.io import partial_folder, replace_folder


def merge_lora(base_path, adapter_dir, dest, dtype="float32", trust_remote_code=False):
    """Write the base model (in the dtype it trained in) with the LoRA adapter merged in, so the next Think loads
    a plain model folder."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, trust_remote_code=trust_remote_code)
    PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().save_pretrained(dest)


def set_stop_token(folder, eot_id):
    """Make the saved generation config stop on the end-of-turn token (first in its eos list)."""
    from transformers import GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(folder)
    except OSError:
        gen = GenerationConfig()
    eos = gen.eos_token_id
    eos = list(eos) if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos])
    gen.eos_token_id = eot_id if eos in ([], [eot_id]) else [eot_id] + [i for i in eos if i != eot_id]
    if gen.pad_token_id is None:
        gen.pad_token_id = eot_id
    gen.save_pretrained(folder)


def save_model_folder(trainer, stage, base_path, eot_id, manifest_fields, run_args, base_dtype="float32",
                      trust_remote_code=False):
    """Save the trained model as a folder that appears under stage.folder only when complete.

    Everything is written into a hidden sibling `.NAME.partial`, manifest.json last, then renamed into place.
    Call on every rank: gathering FSDP / ZeRO-3 shards is collective; only the main process writes.
    """
    from accelerate.utils import is_peft_model

    acc = trainer.accelerator
    output_dir = stage.folder
    partial = partial_folder(output_dir)
    if acc.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
    acc.wait_for_everyone()
    peft = is_peft_model(acc.unwrap_model(trainer.model))
    trainer.save_model(os.path.join(partial, "adapter") if peft else partial)
    if acc.is_main_process:
        if peft:
            merge_lora(base_path, os.path.join(partial, "adapter"), partial, base_dtype, trust_remote_code)
        trainer.processing_class.save_pretrained(partial)  # tokenizer and chat template
        set_stop_token(partial, eot_id)
        stage.finish(run_args, folder=partial, **manifest_fields)
        replace_folder(partial, output_dir)
    acc.wait_for_everyone()
