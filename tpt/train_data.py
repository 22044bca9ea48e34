"""Train's data: kept-trace files → checked records → TRL prompt-completion examples → tokenized examples checked
against what Think samples, cut after the end-of-turn token, too-long ones left out.

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
"""
import os

from tpt.io import DataError, read_questions, sha256_file
from tpt.models import stop_token_ids
from tpt.prompt import build_messages, encode_prompt
from tpt.split import find_overlap

IGNORE = -100  # the label of a token that carries no loss
NUM_CHECKED = 16  # examples whose prompt is re-tokenized and compared with encode_prompt before training


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


def data_files(train_path, eval_path, num_train, num_eval):
    """{"train": {path, sha256, records}, "eval": ...} of the files read (no "eval" without an eval path): what the
    manifest records, and what the fingerprint compares (the content, not the path)."""
    return {
        role: {"path": os.path.abspath(path), "sha256": sha256_file(path), "records": n}
        for role, path, n in (("train", train_path, num_train), ("eval", eval_path, num_eval)) if path
    }


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
            labelled = sum(y != IGNORE for y in completion)
            raise DataError(f"{where}: the completion is not fully labelled ({labelled} of {len(completion)} tokens)")
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
