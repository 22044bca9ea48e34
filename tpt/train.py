"""Train, as one story: TRL's parsed dataclasses go in, a model folder the next Think loads comes out.

    train(script_args, training_args, model_args)     sft_math.py's main calls only this
      1. check before any model loads: the template, the traces (tpt/train_data.py), the launch
      2. the run's Stage (tpt/stage.py): a folder holding this finished run is skipped, one made otherwise refused
      3. fit: TRL's SFTTrainer on the checked examples (the prompt Think sampled with + end-of-turn), checkpoints
         in OUTPUT_DIR.work/ (a killed run continues with --resume_from_checkpoint)
      4. save_model_folder: LoRA merged, stop token set, manifest.json last, renamed into place when complete
      5. the checkpoints removed (unless --keep_checkpoints)

The flags are TRL's dataclasses with TPT's defaults (tpt/train_args.py: the Trainer pickles TrainConfig into
every checkpoint, so it keeps its module); the traces become checked examples in tpt/train_data.py. Nothing here
assumes one process: every rank runs the same code on the same data (the W&B login is checked once, on the main
process, and the answer shared; the fingerprint is the same on every rank); only the main process prints and writes.
"""
import math
import netrc
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlparse

from tpt.io import DataError, partial_folder, read_json, replace_folder
from tpt.models import load_generation_config, resolve_model
from tpt.prompt import check_template
from tpt.train_data import build_dataset, data_files, end_of_turn_id, prepare_examples, read_train_data


def train(script_args, training_args, model_args):
    """The whole Train stage (see the module docstring). Returns the manifest's fields of the run it made, or None
    when the folder already held it. Bad input and refusals are DataErrors, raised before any model loads."""
    started = time.time()
    settings = {**asdict(script_args), **asdict(model_args), **training_args.to_dict()}  # as parsed, for the manifest
    main_process = training_args.process_index == 0

    check_template(script_args.template)
    train_records, eval_records = read_train_data(script_args.train_traces, script_args.eval_traces)
    check_launch(training_args)
    data = data_files(script_args.train_traces, script_args.eval_traces, len(train_records), len(eval_records))

    stage = train_stage(script_args, training_args, model_args)
    if stage.finished(announce=main_process) is not None:
        return None

    run = fit(train_records, eval_records, script_args, training_args, model_args)
    fields = {**run.fields, "data": data, "checkpoints_dir": run.work_dir if script_args.keep_checkpoints else None,
              "wall_seconds": time.time() - started}  # measured before the save, which the manifest closes
    save_model_folder(run, stage, fields, settings)
    if main_process and not script_args.keep_checkpoints:
        # The model folder is complete: a checkpoint (weights + optimizer state, ~12 bytes a parameter) is dead weight.
        shutil.rmtree(run.work_dir, ignore_errors=True)
    run.trainer.end()  # finish W&B, leave the process group
    return fields



# 1. Checks before anything loads

# Where outputs and logs go, how the processes are launched, and whether a killed run resumes do not change the
# trained model; the data files are fingerprinted by content (their sha256) instead of by path. local_rank is
# per process.
NOT_FINGERPRINTED = {
    "output_dir", "run_name", "report_to", "wandb_project", "project", "push_to_hub", "keep_checkpoints",
    "resume_from_checkpoint", "disable_tqdm", "skip_memory_metrics", "local_rank", "ddp_timeout",
    "train_traces", "eval_traces",
    "per_device_eval_batch_size",  # evaluation's speed, not the weights (fingerprinted before: Stage.ignored)
}
NOT_FINGERPRINTED_PREFIXES = ("logging_", "log_", "hub_", "trackio_")


def check_one_process_per_gpu(n_gpu):
    """Fail before anything loads when one process sees several GPUs: transformers would wrap the model in
    DataParallel, which TRL's SFTTrainer refuses (and one GPU's memory would bound the model anyway)."""
    if n_gpu > 1:
        raise DataError(
            f"{n_gpu} GPUs are visible to one process: launch one process per GPU, e.g. `accelerate launch "
            f"--config_file configs/accelerate/fsdp.yaml --num_processes {n_gpu} sft_math.py ...` "
            "(runs/loop.sh: set TRAIN_LAUNCH), or set CUDA_VISIBLE_DEVICES to one GPU"
        )


def wandb_login_problem():
    """Why W&B would ask for a login it cannot get (one line), or None when it can log."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return None
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        if netrc.netrc().authenticators(host):
            return None
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    return ("--report_to wandb: no W&B login found on the main process (run `wandb login`, set WANDB_API_KEY, or "
            "WANDB_MODE=offline); or pass --report_to none")


def check_wandb_on_main(process_index, num_processes):
    """Only the main process logs to W&B, so only its login counts; it tells every rank, and all fail alike
    (a rank that failed alone would leave the others waiting for it until the collective timeout)."""
    problem = wandb_login_problem() if process_index == 0 else None
    if num_processes > 1:
        from accelerate.utils import broadcast_object_list

        problem = broadcast_object_list([problem])[0]
    if problem:
        raise DataError(problem)


def check_launch(training_args):
    """One line before anything loads when the launch cannot train: one process seeing several GPUs, or W&B
    logging without a login."""
    check_one_process_per_gpu(training_args.n_gpu)
    if "wandb" in training_args.report_to:
        check_wandb_on_main(training_args.process_index, training_args.world_size)


# 2. The run's Stage

def train_stage(script_args, training_args, model_args):
    """Train's Stage (tpt.stage): every flag that changes the trained model (TPT's ScriptArguments, TRL's SFTConfig
    and ModelConfig as parsed), the number of processes, and each data file by content (its sha256). A folder
    holding a run made otherwise is refused.

    Read from the flags as parsed, before configure adapts them, so it is the same on every rank and in every
    launch of the same command.
    """
    from tpt.stage import MANIFEST, REFUSE, Stage

    trl_settings = training_args.to_dict()
    for name in trl_settings:
        if name.endswith("_token"):  # to_dict hides these (for hub_token), but eos_token and pad_token train
            trl_settings[name] = getattr(training_args, name)
    settings = {**asdict(script_args), **asdict(model_args), **trl_settings}
    record = {k: v for k, v in settings.items()
              if k not in NOT_FINGERPRINTED and not k.startswith(NOT_FINGERPRINTED_PREFIXES)}
    record["world_size"] = training_args.world_size  # the processes multiply the batch of an optimizer step
    inputs = {"train_data": script_args.train_traces, "eval_data": script_args.eval_traces}
    return Stage("Train", training_args.output_dir, MANIFEST, record, inputs=inputs, on_change=REFUSE,
                 ignored=tuple(sorted(NOT_FINGERPRINTED)))


# 3. fit: the model, TRL's SFTConfig adapted to the run, the trainer

def weight_dtype(requested, use_peft, bf16):
    """The dtype weights load in: the user's, else float32 master weights for full fine-tuning (lr 1e-6 updates
    round away in bf16 weights), else the compute dtype for a LoRA base, which is frozen."""
    if requested:
        return requested
    return "bfloat16" if use_peft and bf16 else "float32"


def model_load_kwargs(config, dtype, attn_implementation, revision="main", quantized=False, trust_remote_code=False):
    """from_pretrained keywords for the trained model (TRL's model_init_kwargs)."""
    from tpt.models import pick_attn_implementation

    kwargs = {
        "dtype": dtype,
        "attn_implementation": pick_attn_implementation(config, attn_implementation),
        "revision": revision,
        "trust_remote_code": trust_remote_code,
    }
    if not quantized:  # every process holds its own copy or shard, placed by accelerate; TRL places k-bit bases
        kwargs["device_map"] = None
    return kwargs


def configure(training_args, work_dir, output_dir, has_eval, load_kwargs):
    """Adapt TRL's SFTConfig as parsed to this run (in place): checkpoints in work_dir, eval only with eval traces,
    TRL's truncation off (prepare_examples drops long traces instead), the model loaded with load_kwargs (the
    user's --model_init_kwargs win). Returns --max_length, the length above which traces are left out."""
    from transformers.trainer_utils import IntervalStrategy

    if training_args.load_best_model_at_end and not has_eval:
        raise DataError("--load_best_model_at_end needs eval traces (--eval_traces with at least one record)")
    max_length = training_args.max_length
    training_args.max_length = None
    training_args.output_dir = work_dir
    if not has_eval:
        training_args.eval_strategy, training_args.do_eval = IntervalStrategy.NO, False
    training_args.model_init_kwargs = {**load_kwargs, **(training_args.model_init_kwargs or {})}
    if training_args.run_name is None:
        training_args.run_name = os.environ.get("WANDB_NAME") or os.path.basename(os.path.abspath(output_dir))
    return max_length


# Vocabulary columns per logit tile when TRL scores tokens on a CPU (its default, 32,768, suits its GPU kernel)
CPU_LOGPROB_TILE = 2048


def cpu_scoring_tiles():
    """On a CPU, TRL's fused LM head (log-probs without the full logits) folds each [tokens, 32,768] logit tile
    with a dozen whole-tile torch ops: at ~500 tokens a tile is 70 MB, past what the caches and malloc keep, and the
    loss took 45% of a step. Tiles of 2,048 columns stay in cache (the same sums in another order: last bits only)
    and malloc keeps its freed memory (tpt.device.reuse_freed_memory): 1.4x the tokens/s (docs/benchmarks.md#train).
    A GPU keeps TRL's tiles."""
    import torch
    import trl.trainer.utils

    from tpt.device import reuse_freed_memory

    if torch.cuda.is_available():
        return
    reuse_freed_memory()
    if hasattr(trl.trainer.utils, "_CHUNKED_LOGPROB_CHUNK_SIZE"):  # TRL's private knob (trl pinned in requirements)
        trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE = CPU_LOGPROB_TILE


def optimizer_steps(training_args, num_examples):
    """Optimizer steps the run will take (transformers' count: a partial accumulation still steps)."""
    if training_args.max_steps > 0:
        return training_args.max_steps
    batches = math.ceil(num_examples / (training_args.per_device_train_batch_size * training_args.world_size))
    per_epoch = max(1, math.ceil(batches / training_args.gradient_accumulation_steps))
    return math.ceil(per_epoch * training_args.num_train_epochs)


def spread_intervals(training_args, steps):
    """--eval_steps / --save_steps given as a fraction of the run (below 1) become whole steps, in place; a run too
    short for two steps between them (at 0.25: under 8 steps) evaluates and checkpoints once, at its end, instead of
    at every step (an evaluation costs a third of a training pass over as many traces)."""
    for name in ("eval_steps", "save_steps"):
        fraction = getattr(training_args, name)
        if fraction is not None and 0 < fraction < 1:
            setattr(training_args, name, steps if steps < 2 / fraction else math.ceil(fraction * steps))


def find_checkpoint(resume, work_dir):
    """The checkpoint folder to resume from: None, a given folder, or 'last' = the newest one in work_dir."""
    if resume is None:
        return None
    if resume == "last":
        from transformers.trainer_utils import get_last_checkpoint

        found = get_last_checkpoint(work_dir) if os.path.isdir(work_dir) else None
        if found is None:
            raise DataError(f"--resume_from_checkpoint: no checkpoint in {work_dir}")
        return found
    if not os.path.isfile(os.path.join(resume, "trainer_state.json")):
        raise DataError(f"--resume_from_checkpoint {resume}: not a checkpoint folder (no trainer_state.json)")
    return resume


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


def fit(train_records, eval_records, script_args, training_args, model_args):
    """Fine-tune on the checked records with TRL's SFTTrainer; returns a TrainedRun.

    training_args (TRL's SFTConfig as parsed) is adapted in place (configure): checkpoints go to OUTPUT_DIR.work/,
    whence --resume_from_checkpoint continues a killed run.
    """
    from trl import get_peft_config, get_quantization_config

    model_name_or_path, model_revision = model_args.model_name_or_path, model_args.model_revision
    template, wandb_project = script_args.template, script_args.wandb_project
    peft_config, quantization_config = get_peft_config(model_args), get_quantization_config(model_args)
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
    dtype = weight_dtype(model_args.dtype, peft_config is not None, training_args.bf16)
    load_kwargs = model_load_kwargs(config, dtype, model_args.attn_implementation, model_revision,
                                    quantization_config is not None, trust)
    max_length = configure(training_args, work_dir, output_dir, bool(eval_records), load_kwargs)
    cpu_scoring_tiles()

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


# 4. The model folder

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


def save_model_folder(run, stage, manifest_fields, run_args):
    """Save the trained model (run: a TrainedRun) as a folder that appears under stage.folder only when complete.

    Everything is written into a hidden sibling `.NAME.partial`, manifest.json last, then renamed into place.
    Call on every rank: gathering FSDP / ZeRO-3 shards is collective; only the main process writes.
    """
    from accelerate.utils import is_peft_model

    trainer, trust_remote_code = run.trainer, run.trainer.args.trust_remote_code
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
            merge_lora(run.base_path, os.path.join(partial, "adapter"), partial, run.weight_dtype, trust_remote_code)
        trainer.processing_class.save_pretrained(partial)  # tokenizer and chat template
        set_stop_token(partial, run.eot_id)
        stage.finish(run_args, folder=partial, **manifest_fields)
        replace_folder(partial, output_dir)
    acc.wait_for_everyone()
