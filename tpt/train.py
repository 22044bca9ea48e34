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

Nothing here assumes one process: every rank prepares the same data, trainer.save_model gathers sharded weights
(FSDP, ZeRO-3) on all ranks, and only the main process writes files.
"""
import hashlib
import netrc
import os
import shutil
import time
from urllib.parse import urlparse

from tpt.data import find_overlap
from tpt.io import DataError, read_json, read_questions
from tpt.manifest import write_manifest
from tpt.models import resolve_model
from tpt.prompt import build_messages, encode_prompt

# grouped: padded batches of traces of similar length (LengthGroupedSampler), the fastest here (bench_train.py);
# padding: padded batches in random order; padding_free: a batch is one row of whole traces, no cross-trace attention.
BATCHING = ("grouped", "padding", "padding_free")
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


def stop_token_ids(tokenizer, generation_config=None):
    """The ids generation stops on: the generation config's eos ids, then the tokenizer's eos."""
    eos = getattr(generation_config, "eos_token_id", None)
    ids = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    ids.append(tokenizer.eos_token_id)
    return [i for i in dict.fromkeys(ids) if i is not None]


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


def check_wandb_ready():
    """Fail before any model is loaded when W&B would ask for a login it cannot get."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        if netrc.netrc().authenticators(host):
            return
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    raise DataError(
        "--report_to wandb: no W&B login found (run `wandb login`, set WANDB_API_KEY, or WANDB_MODE=offline); "
        "or pass --report_to none"
    )


def lora_config(args):
    from peft import LoraConfig

    targets = args.lora_target_modules
    return LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, task_type="CAUSAL_LM",
        target_modules=targets[0] if targets == ["all-linear"] else targets,
    )


def use_bf16(choice):
    """bf16 mixed precision: 'auto' turns it on where a GPU supports it (CPU stays float32)."""
    import torch

    if choice == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return choice == "true"


def sft_config(args, work_dir, has_eval):
    """The SFTConfig for args; checkpoints go to work_dir (beside the output folder, never inside it)."""
    import torch
    from trl import SFTConfig

    return SFTConfig(
        # Without an accelerator, say so: only then does accelerate run torchrun's ranks as MULTI_CPU (gloo)
        # rather than as independent single-process runs.
        use_cpu=not torch.accelerator.is_available(),
        output_dir=work_dir,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type=args.lr_scheduler_type,
        warmup_steps=args.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=args.weight_decay,
        seed=args.seed,
        bf16=use_bf16(args.bf16),
        gradient_checkpointing=args.gradient_checkpointing,
        logging_steps=args.logging_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=args.eval_steps,
        report_to=[] if args.report_to == "none" else [args.report_to],
        run_name=args.run_name or os.environ.get("WANDB_NAME") or os.path.basename(os.path.abspath(args.output_dir)),
        # Length is handled in prepare_examples (drop, never truncate); TRL would truncate.
        max_length=None,
        padding_free=args.batching == "padding_free",
        train_sampling_strategy="group_by_length" if args.batching == "grouped" else "random",
        # Real tokens seen, summed over processes: padding-free batches hold no padding; padded ones are masked.
        include_num_input_tokens_seen="all" if args.batching == "padding_free" else "non_padding",
        completion_only_loss=True,
        model_init_kwargs={"dtype": "float32", "device_map": None},  # float32 master weights; bf16 only as autocast
        trust_remote_code=args.trust_remote_code,
    )


def merge_lora(base_path, adapter_dir, dest, trust_remote_code=False):
    """Write the base model with the LoRA adapter merged in, so the next Think loads a plain model folder."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype="float32", trust_remote_code=trust_remote_code)
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


def save_model_folder(trainer, output_dir, base_path, eot_id, manifest_fields, args, trust_remote_code=False):
    """Save the trained model as a folder that appears under output_dir only when complete.

    Everything is written into a hidden sibling `.NAME.partial`, manifest.json last, then renamed into place.
    Call on every rank: gathering FSDP / ZeRO-3 shards is collective; only the main process writes.
    """
    from accelerate.utils import is_peft_model

    acc = trainer.accelerator
    parent, name = os.path.split(os.path.abspath(output_dir))
    partial = os.path.join(parent, f".{name}.partial")
    if acc.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
    acc.wait_for_everyone()
    peft = is_peft_model(acc.unwrap_model(trainer.model))
    trainer.save_model(os.path.join(partial, "adapter") if peft else partial)
    if acc.is_main_process:
        if peft:
            merge_lora(base_path, os.path.join(partial, "adapter"), partial, trust_remote_code)
        trainer.processing_class.save_pretrained(partial)  # tokenizer and chat template
        set_stop_token(partial, eot_id)
        write_manifest(partial, args, **manifest_fields)
        old = os.path.join(parent, f".{name}.old")
        if os.path.exists(output_dir):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(output_dir, old)
        os.replace(partial, output_dir)
        shutil.rmtree(old, ignore_errors=True)
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


def train(args):
    """Validate the data, fine-tune with TRL, save the model folder. Returns the manifest fields."""
    started = time.time()
    train_records, eval_records = read_train_data(args.train_data_path, args.eval_data_path)
    work_dir = os.path.abspath(args.output_dir) + ".work"
    checkpoint = find_checkpoint(args.resume_from_checkpoint, work_dir)
    if args.report_to == "wandb":
        check_wandb_ready()
        if args.wandb_project:
            os.environ["WANDB_PROJECT"] = args.wandb_project
        os.environ.setdefault("WANDB_PROJECT", "tpt")

    from transformers import AutoTokenizer, GenerationConfig
    from trl import SFTTrainer

    model_path = resolve_model(args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=args.trust_remote_code)
    try:
        generation_config = GenerationConfig.from_pretrained(model_path)
    except OSError:
        generation_config = None
    eot_id = end_of_turn_id(tokenizer, generation_config, args.template)

    trainer = SFTTrainer(
        model=model_path,
        args=sft_config(args, work_dir, bool(eval_records)),
        train_dataset=build_dataset(train_records, args.template),
        eval_dataset=build_dataset(eval_records, args.template) if eval_records else None,
        processing_class=tokenizer,
        peft_config=lora_config(args) if args.use_peft else None,
    )
    trainer.train_dataset, dropped = prepare_examples(
        trainer.train_dataset, tokenizer, train_records, args.template, eot_id, args.max_length, "train"
    )
    if eval_records:
        trainer.eval_dataset, _ = prepare_examples(
            trainer.eval_dataset, tokenizer, eval_records, args.template, eot_id, args.max_length, "eval"
        )
    main = trainer.accelerator.is_main_process
    if main:
        print(f"train: {len(trainer.train_dataset)} traces ({dropped} longer than --max_length {args.max_length} left out), "
              f"{len(eval_records)} eval traces, {trainer.accelerator.num_processes} process(es), batching {args.batching}, "
              f"end-of-turn {tokenizer.convert_ids_to_tokens(eot_id)!r}")

    tokens_before = read_json(os.path.join(checkpoint, "trainer_state.json")).get("num_input_tokens_seen", 0) if checkpoint else 0
    result = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = result.metrics["train_runtime"]
    tokens = trainer.state.num_input_tokens_seen  # real tokens of all processes, carried over a resume
    fields = {
        "base_model": {"name": args.model_name_or_path, "path": model_path},
        "data": {
            role: {"path": os.path.abspath(p), "sha256": sha256_file(p), "records": n}
            for role, p, n in (("train", args.train_data_path, len(train_records)),
                               ("eval", args.eval_data_path, len(eval_records))) if p
        },
        "train_examples": len(trainer.train_dataset),
        "dropped_longer_than_max_length": dropped,
        "end_of_turn_token": tokenizer.convert_ids_to_tokens(eot_id),
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "train_tokens": int(tokens),
        "tokens_per_second": (tokens - tokens_before) / runtime if runtime else None,  # this launch only
        "train_runtime_seconds": runtime,
        "resumed_from": checkpoint,
        "checkpoints_dir": work_dir,
    }
    fields["wall_seconds"] = time.time() - started  # measured before the save, which the manifest closes
    save_model_folder(trainer, args.output_dir, model_path, eot_id, fields, args, args.trust_remote_code)
    if main:
        print(f"train: {fields['global_step']} steps, loss {fields['train_loss']:.4f}, {fields['train_tokens']} tokens, "
              f"{fields['tokens_per_second']:.1f} tokens/s, {fields['wall_seconds']:.0f} s; model → {args.output_dir}")
    return fields
