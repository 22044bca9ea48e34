"""Train: kept traces → TRL prompt-completion examples → checks → SFTTrainer → one atomically saved model folder.

Each trace becomes a conversational prompt-completion example: the prompt is tpt.prompt.build_messages (the very
messages Think sampled from), the completion is the model's own solution as the assistant turn. TRL renders both
with the model's chat template, masks the prompt and labels the completion. Two things are added here:
- the chat template puts a separator after the end-of-turn token ("\\n" for SmolLM2 and Gemma) that the model never
  generates (generation stops at the end-of-turn token); TRL labels it, here each example is cut right after its
  end-of-turn token, so the model trains on exactly the tokens it is sampled with plus the token that stops it;
- an example longer than --max_length is left out rather than truncated: truncation would cut its end-of-turn
  token and teach the model not to stop.
Before training, check_examples proves on real examples that the prompt ids equal encode_prompt (what Think feeds
the model) and that the labels are the completion plus the end-of-turn token; otherwise one clear error.

Nothing here assumes one process: every rank prepares the same data, the W&B login is checked once (main process)
and the answer shared, trainer.save_model gathers sharded weights (FSDP, ZeRO-3) on all ranks, and only the main
process writes files. The flags (TRL's dataclasses with TPT's defaults) are in tpt/train_args.py; train() takes
TRL's SFTConfig and explicit values.
"""
import hashlib
import netrc
import os
import shutil
import time
from urllib.parse import urlparse

from tpt.io import DataError, partial_folder, read_json, read_questions, replace_folder
from tpt.manifest import write_manifest
from tpt.models import load_generation_config, resolve_model, stop_token_ids
from tpt.prompt import build_messages, check_template, encode_prompt
from tpt.split import find_overlap

IGNORE = -100  # the label of a token that carries no loss
NUM_CHECKED = 16  # examples whose prompt is re-tokenized and compared with encode_prompt before training


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_train_data(train_path, eval_path=None):
    """(train, eval) records from the kept-trace files; eval is [] without a path.

    Raises DataError (one line, naming file and record) on a missing file, an empty train set, a record without
    question or solution, an empty solution, or an eval question that also appears in train (normalised text).
    """
    train = read_questions(train_path, unique_idt=False)
    if not train:
        raise DataError(f"{train_path}: no training records")
    # An empty eval file is what make_json.py writes when every kept trace fits in train: no eval loss then.
    evals = read_questions(eval_path, unique_idt=False) if eval_path else []
    for path, records in ((train_path, train), (eval_path, evals)):
        for i, rec in enumerate(records):
            for field in ("question", "solution"):
                if not rec[field].strip():
                    raise DataError(f"{path}: record {i} (idt {rec['idt']!r}): empty {field}")
    leaked = [i for i, _ in find_overlap(evals, train)]
    if leaked:
        first = evals[leaked[0]]
        raise DataError(
            f"{eval_path}: {len(leaked)} of {len(evals)} eval questions also appear in {train_path} "
            f"(first: record {leaked[0]}, idt {first['idt']!r}); split the traces by question (make_json.py does)"
        )
    return train, evals


def build_dataset(records, template="tpt"):
    """A datasets.Dataset of conversational prompt-completion examples, in the order of records."""
    from datasets import Dataset

    return Dataset.from_list([
        {
            "prompt": build_messages(r["question"], template),
            "completion": [{"role": "assistant", "content": r["solution"]}],
        }
        for r in records
    ])


def _chat_ids(tokenizer, messages, add_generation_prompt):
    return list(tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )["input_ids"])


def end_of_turn_id(tokenizer, generation_config=None, template="tpt"):
    """The token the chat template closes an assistant turn with, which must be one generation stops on.

    Found, not assumed: <|im_end|> for SmolLM2 and Qwen, <end_of_turn> for Gemma (whose tokenizer eos is <eos>
    but whose generation config stops on <end_of_turn> too).
    """
    stops = stop_token_ids(tokenizer, generation_config)
    messages = build_messages("What is 1 + 1?", template)
    prompt = _chat_ids(tokenizer, messages, True)
    full = _chat_ids(tokenizer, messages + [{"role": "assistant", "content": "2"}], False)
    start = next((i for i, (a, b) in enumerate(zip(prompt, full)) if a != b), len(prompt))
    for token in full[start:]:
        if token in stops:
            return token
    names = [tokenizer.convert_ids_to_tokens(i) for i in stops]
    raise DataError(
        f"the chat template does not close the assistant turn with a token generation stops on {names}: "
        "a model trained on it would never learn to stop"
    )


def cut_after_end_of_turn(dataset, eot_id):
    """Cut each tokenized example right after its last labelled end-of-turn token (drops the template's separator)."""

    def cut(example):
        ends = [i for i, (t, y) in enumerate(zip(example["input_ids"], example["labels"])) if t == eot_id and y != IGNORE]
        n = ends[-1] + 1 if ends else len(example["input_ids"])
        return {"input_ids": example["input_ids"][:n], "labels": example["labels"][:n]}

    return dataset.map(cut, desc="Cutting after the end-of-turn token")


def check_examples(dataset, tokenizer, records, template, eot_id, name="train", num_checked=NUM_CHECKED):
    """Raise DataError unless the tokenized examples are what Think samples plus the stop token.

    On the first num_checked examples: the prompt ids equal encode_prompt(...) and are a prefix of the example,
    the prompt carries no loss, every completion token does, and the last label is the end-of-turn token.
    On every example: the completion mask is not empty.
    """
    eot = tokenizer.convert_ids_to_tokens(eot_id)
    for i in range(min(num_checked, len(dataset))):
        ids, labels = dataset[i]["input_ids"], dataset[i]["labels"]
        where = f"{name} record {i} (idt {records[i]['idt']!r})"
        prompt = encode_prompt(tokenizer, records[i]["question"], template)
        if ids[: len(prompt)] != prompt:
            raise DataError(f"{where}: the prompt tokens TRL built differ from what Think feeds the model (encode_prompt)")
        if any(y != IGNORE for y in labels[: len(prompt)]):
            raise DataError(f"{where}: prompt tokens carry loss")
        completion = labels[len(prompt):]
        if not completion or any(y == IGNORE for y in completion):
            raise DataError(f"{where}: the completion is not fully labelled ({sum(y != IGNORE for y in completion)} of {len(completion)} tokens)")
        if completion[-1] != eot_id:
            last = tokenizer.convert_ids_to_tokens(completion[-1])
            raise DataError(f"{where}: the labels end with {last!r}, not the end-of-turn token {eot!r}")
    for i, labels in enumerate(dataset["labels"]):
        if all(y == IGNORE for y in labels):
            raise DataError(f"{name} record {i} (idt {records[i]['idt']!r}): empty completion mask, nothing to learn")


def drop_longer_than(dataset, max_length):
    """(dataset without the examples longer than max_length, how many were dropped)."""
    if not max_length:
        return dataset, 0
    kept = dataset.filter(lambda e: len(e["input_ids"]) <= max_length, desc=f"Dropping examples over {max_length} tokens")
    return kept, len(dataset) - len(kept)


def prepare_examples(dataset, tokenizer, records, template, eot_id, max_length, name="train"):
    """TRL's tokenized dataset → cut after the end-of-turn token, checked, too-long examples dropped."""
    dataset = cut_after_end_of_turn(dataset, eot_id)
    check_examples(dataset, tokenizer, records, template, eot_id, name)
    dataset, dropped = drop_longer_than(dataset, max_length)
    if len(dataset) == 0:
        raise DataError(f"every {name} example is longer than --max_length {max_length} tokens")
    return dataset, dropped


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


def save_model_folder(trainer, output_dir, base_path, eot_id, manifest_fields, run_args, base_dtype="float32",
                      trust_remote_code=False):
    """Save the trained model as a folder that appears under output_dir only when complete.

    Everything is written into a hidden sibling `.NAME.partial`, manifest.json last, then renamed into place.
    Call on every rank: gathering FSDP / ZeRO-3 shards is collective; only the main process writes.
    """
    from accelerate.utils import is_peft_model

    acc = trainer.accelerator
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
        write_manifest(partial, run_args, **manifest_fields)
        replace_folder(partial, output_dir)
    acc.wait_for_everyone()


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


def train(train_data_path, training_args, *, eval_data_path=None, model_name_or_path="smollm2-135m",
          model_revision="main", template="tpt", dtype=None, attn_implementation=None, peft_config=None,
          quantization_config=None, keep_checkpoints=False, wandb_project=None, run_args=None):
    """Validate the data, fine-tune with TRL, save the model folder at training_args.output_dir.

    training_args is TRL's SFTConfig (tpt.train_args.TrainConfig as sft_math.py parses it); it is adapted in place
    (configure). Returns the manifest fields.
    """
    started = time.time()
    output_dir = training_args.output_dir
    check_template(template)
    check_one_process_per_gpu(training_args.n_gpu)
    train_records, eval_records = read_train_data(train_data_path, eval_data_path)
    work_dir = os.path.abspath(output_dir) + ".work"
    checkpoint = find_checkpoint(training_args.resume_from_checkpoint, work_dir)
    if "wandb" in training_args.report_to:
        check_wandb_on_main(training_args.process_index, training_args.world_size)
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
    attention = trainer.accelerator.unwrap_model(trainer.model).config._attn_implementation
    main = trainer.accelerator.is_main_process
    if main:
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
        "data": {
            role: {"path": os.path.abspath(p), "sha256": sha256_file(p), "records": n}
            for role, p, n in (("train", train_data_path, len(train_records)),
                               ("eval", eval_data_path, len(eval_records))) if p
        },
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
        "train_runtime_seconds": runtime,
        "resumed_from": checkpoint,
        "checkpoints_dir": work_dir if keep_checkpoints else None,
    }
    fields["wall_seconds"] = time.time() - started  # measured before the save, which the manifest closes
    save_model_folder(trainer, output_dir, model_path, eot_id, fields, run_args or {}, dtype, trust)
    if main and not keep_checkpoints:
        # The model folder is complete: a checkpoint (weights + optimizer state, ~12 bytes a parameter) is dead weight.
        shutil.rmtree(work_dir, ignore_errors=True)
    if main:
        print(f"train: {fields['global_step']} steps, loss {fields['train_loss']:.4f}, {fields['train_tokens']} tokens, "
              f"{fields['tokens_per_second']:.1f} tokens/s, {fields['wall_seconds']:.0f} s; model → {output_dir}")
    trainer.end()  # finish W&B, leave the process group
    return fields
