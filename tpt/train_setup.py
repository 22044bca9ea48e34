"""Train's set-up: the launch checked before anything loads, the run's fingerprint, and TRL's SFTConfig adapted to
the run (weights' dtype, load keywords, folders, the checkpoint to resume from).

Nothing here assumes one process: the W&B login is checked once (main process) and the answer shared, and the
fingerprint is the same on every rank of a launch.
"""
import json
import math
import netrc
import os
from dataclasses import asdict
from urllib.parse import urlparse

from tpt.io import DataError

# Where outputs and logs go, how the processes are launched, and whether a killed run resumes do not change the
# trained model; the data files are fingerprinted by content (their sha256) instead of by path. local_rank is
# per process.
NOT_FINGERPRINTED = {
    "output_dir", "run_name", "report_to", "wandb_project", "project", "push_to_hub", "keep_checkpoints",
    "resume_from_checkpoint", "disable_tqdm", "skip_memory_metrics", "local_rank", "ddp_timeout",
    "train_data_path", "eval_data_path",
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


def train_fingerprint(script_args, training_args, model_args, data):
    """What must match for a folder's finished run to be this run: every flag that changes the trained model (TPT's
    ScriptArguments, TRL's SFTConfig and ModelConfig as parsed), the number of processes, and the sha256 of each
    data file (data: tpt.train_data.data_files).

    Read from the flags as parsed, before configure adapts them, so it is the same on every rank and in every
    launch of the same command; JSON-normalised, as it is compared with the one read back from manifest.json.
    """
    trl_settings = training_args.to_dict()
    for name in trl_settings:
        if name.endswith("_token"):  # to_dict hides these (for hub_token), but eos_token and pad_token train
            trl_settings[name] = getattr(training_args, name)
    settings = {**asdict(script_args), **asdict(model_args), **trl_settings}
    record = {k: v for k, v in settings.items()
              if k not in NOT_FINGERPRINTED and not k.startswith(NOT_FINGERPRINTED_PREFIXES)}
    record["world_size"] = training_args.world_size  # the processes multiply the batch of an optimizer step
    for role in ("train", "eval"):
        record[f"{role}_data_sha256"] = data[role]["sha256"] if role in data else None
    return json.loads(json.dumps(record, sort_keys=True, default=str))


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
        raise DataError("--load_best_model_at_end needs eval traces (--eval_data_path with at least one record)")
    max_length = training_args.max_length
    training_args.max_length = None
    training_args.output_dir = work_dir
    if not has_eval:
        training_args.eval_strategy, training_args.do_eval = IntervalStrategy.NO, False
    training_args.model_init_kwargs = {**load_kwargs, **(training_args.model_init_kwargs or {})}
    if training_args.run_name is None:
        training_args.run_name = os.environ.get("WANDB_NAME") or os.path.basename(os.path.abspath(output_dir))
    return max_length


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
