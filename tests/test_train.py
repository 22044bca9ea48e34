"""tpt.train on real traces and the real embedded model, no training step: what TRL builds is what Think samples.

Runtime budget: ~1.5 min measured on 2 busy cores at load ~7 (one SFTTrainer set-up, three forward passes).
"""
import json

import pytest

from tests.conftest import TPT_REF
from tpt.io import DataError
from tpt.prompt import build_prompt, encode_prompt

NUM = 8  # real traces per test


def _args(tmp_path, **over):
    import sft_math

    argv = ["--train_data_path", "x", "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    args = sft_math.build_parser().parse_args(argv)
    vars(args).update(over)
    return args


def _records(n=NUM, start=0):
    from tpt.io import read_questions

    return read_questions(TPT_REF / "math2b_2k.json")[start:start + n]


def _trainer(tmp_path, records, template="tpt", model=None, tokenizer=None, batching="grouped"):
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from tpt.models import resolve_model
    from tpt.train import build_dataset, sft_config

    path = resolve_model("smollm2-135m")
    return SFTTrainer(
        model=model or path,
        args=sft_config(_args(tmp_path, batching=batching), str(tmp_path / "work"), False),
        train_dataset=build_dataset(records, template),
        processing_class=tokenizer or AutoTokenizer.from_pretrained(path),
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One SFTTrainer over real traces, as sft_math.py builds it, with the examples prepared."""
    from tpt.train import end_of_turn_id, prepare_examples

    records = _records()
    trainer = _trainer(tmp_path_factory.mktemp("train"), records, batching="padding_free")
    tok = trainer.processing_class
    eot = end_of_turn_id(tok, trainer.model.generation_config)
    raw = trainer.train_dataset
    prepared, dropped = prepare_examples(raw, tok, records, "tpt", eot, max_length=None)
    return {"trainer": trainer, "records": records, "eot": eot, "raw": raw, "prepared": prepared, "dropped": dropped}


def test_end_of_turn_is_found_from_the_tokenizer(built):
    tok = built["trainer"].processing_class
    assert tok.convert_ids_to_tokens(built["eot"]) == "<|im_end|>"


def test_prompt_ids_equal_what_think_feeds(built):
    # TRL's prompt part of every training example == tpt.prompt.encode_prompt, the ids Think samples from.
    tok = built["trainer"].processing_class
    for rec, ex in zip(built["records"], built["prepared"]):
        prompt = encode_prompt(tok, rec["question"], "tpt")
        assert ex["input_ids"][: len(prompt)] == prompt


@pytest.mark.parametrize("template", ["tpt", "plain"])
def test_prompt_parity_for_each_template(tmp_path, template):
    # The prefix check of TRL's own tokenization, per template, on other real questions (from the test split).
    from transformers import AutoTokenizer

    from tpt.io import read_questions
    from tpt.models import resolve_model
    from tpt.train import build_dataset

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    records = read_questions(TPT_REF / "test500.json")[:4]
    for rec, ex in zip(records, build_dataset(records, template)):
        trl_prompt = tok.apply_chat_template(ex["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True)
        assert list(trl_prompt["input_ids"]) == encode_prompt(tok, rec["question"], template)


def test_label_mask_is_completion_plus_end_of_turn(built):
    # Loss on exactly the solution tokens and <|im_end|>; nothing of the prompt, nothing after the stop token.
    tok = built["trainer"].processing_class
    for rec, ex in zip(built["records"], built["prepared"]):
        prompt_len = len(encode_prompt(tok, rec["question"], "tpt"))
        labelled = [i for i, y in enumerate(ex["labels"]) if y != -100]
        assert labelled == list(range(prompt_len, len(ex["input_ids"])))
        assert [ex["labels"][i] for i in labelled] == ex["input_ids"][prompt_len:]
        # The whole sequence is Think's prompt string + the sampled text + the stop token, tokenized as one text.
        text = build_prompt(tok, rec["question"], "tpt") + rec["solution"] + "<|im_end|>"
        assert ex["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
        assert ex["labels"][-1] == built["eot"]


def test_trl_alone_labels_the_separator_after_end_of_turn(built):
    # Why cut_after_end_of_turn exists: TRL labels the template's "\n" after <|im_end|>, which is never generated.
    tok = built["trainer"].processing_class
    ex = built["raw"][0]
    assert tok.convert_ids_to_tokens(ex["labels"][-2:]) == ["<|im_end|>", "Ċ"]


def test_padding_free_batch_has_no_cross_trace_attention(built):
    # --batching padding_free concatenates traces into one row; each trace's log-probs must equal those it gets alone.
    import torch

    trainer = built["trainer"]
    model = trainer.model.eval()
    examples = [{k: built["prepared"][i][k] for k in ("input_ids", "labels")} for i in range(2)]

    def logprobs(batch):
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k in ("input_ids", "position_ids", "attention_mask")}).logits
        return torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][..., None])[..., 0]

    packed = logprobs(trainer.data_collator(examples))[0]
    alone = torch.cat([logprobs(trainer.data_collator([ex]))[0] for ex in examples])
    assert trainer.data_collator.padding_free
    assert torch.allclose(packed, alone, atol=1e-4)


@pytest.mark.parametrize("mutate, message", [
    # the stop token is not labelled: the model would never learn to stop
    (lambda ids, y, p: (ids, y[:-1]), "not the end-of-turn token"),
    # a prompt token carries loss
    (lambda ids, y, p: (ids, [ids[0]] + y[1:]), "prompt tokens carry loss"),
    # nothing of the completion is labelled
    (lambda ids, y, p: (ids, [-100] * len(y)), "not fully labelled"),
    # the prompt tokens differ from encode_prompt (one token changed)
    (lambda ids, y, p: ([ids[0]] + [ids[1] + 1] + ids[2:], y), "differ from what Think feeds"),
])
def test_check_examples_rejects(built, mutate, message):
    from datasets import Dataset

    from tpt.train import check_examples

    tok = built["trainer"].processing_class
    ex = built["prepared"][0]
    ids, labels = mutate(list(ex["input_ids"]), list(ex["labels"]), len(encode_prompt(tok, built["records"][0]["question"])))
    bad = Dataset.from_list([{"input_ids": ids, "labels": labels}])
    with pytest.raises(DataError, match=message):
        check_examples(bad, tok, built["records"][:1], "tpt", built["eot"])


@pytest.mark.parametrize("closing, message", [
    # assistant turns closed by a blank line only: no token to stop on
    ("'\n\n'", "never learn to stop"),
])
def test_end_of_turn_must_be_a_stop_token(closing, message):
    from transformers import AutoTokenizer

    from tpt.models import resolve_model
    from tpt.train import end_of_turn_id

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    tok.chat_template = (
        "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + "
        + closing + "}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\n'}}{% endif %}"
    )
    with pytest.raises(DataError, match=message):
        end_of_turn_id(tok)


def test_prompt_rendered_differently_in_training_is_caught(tmp_path):
    # A template whose generation prompt differs from the assistant turn it renders in a full conversation.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tpt.models import resolve_model
    from tpt.train import end_of_turn_id, prepare_examples

    path = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = (
        "{% for m in messages %}{{'<|im_start|>' + m['role'] + ':\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{'<|im_start|>assistant\n'}}{% endif %}"
    )
    records = _records(2)
    trainer = _trainer(tmp_path, records, model=AutoModelForCausalLM.from_pretrained(path), tokenizer=tok)
    with pytest.raises(DataError, match="differ from what Think feeds"):
        prepare_examples(trainer.train_dataset, tok, records, "tpt", end_of_turn_id(tok), None)


def test_too_long_traces_are_left_out_not_truncated(built):
    from tpt.train import drop_longer_than

    lengths = sorted(len(ids) for ids in built["prepared"]["input_ids"])
    kept, dropped = drop_longer_than(built["prepared"], lengths[3])
    assert dropped == len([n for n in lengths if n > lengths[3]]) and dropped > 0
    assert all(ids[-1] == built["eot"] for ids in kept["input_ids"])


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


REC = {"idt": 1, "question": "What is 2 + 3?", "solution": "2 + 3 = 5\n#### 5", "solnum": "5"}


@pytest.mark.parametrize("train, evals, message", [
    # missing train file
    (None, None, "file not found"),
    # empty train set
    ([], None, "no training records"),
    # a record without a solution
    ([{k: v for k, v in REC.items() if k != "solution"}], None, "missing field 'solution'"),
    # a record without a question
    ([{k: v for k, v in REC.items() if k != "question"}], None, "missing field 'question'"),
    # an empty solution: nothing to learn
    ([dict(REC, solution="  ")], None, "empty solution"),
    # an eval question also in train (differing only in case and spacing)
    ([REC], [dict(REC, idt=7, question="what  is 2 + 3?")], "1 of 1 eval questions also appear"),
])
def test_read_train_data_rejects(tmp_path, train, evals, message):
    from tpt.train import read_train_data

    train_path = _write(tmp_path / "train.json", train) if train is not None else str(tmp_path / "nope.json")
    eval_path = _write(tmp_path / "eval.json", evals) if evals is not None else None
    with pytest.raises(DataError, match=message):
        read_train_data(train_path, eval_path)


def test_read_train_data_keeps_several_traces_per_question(tmp_path):
    # Kept-trace files may hold several correct traces of one question (same idt), as evmath.py can keep them.
    from tpt.train import read_train_data

    train, evals = read_train_data(_write(tmp_path / "t.json", [REC, dict(REC, solution="5\n#### 5")]))
    assert len(train) == 2 and evals == []


def test_read_train_data_accepts_an_empty_eval_file(tmp_path):
    # make_json.py writes an empty eval file when every kept trace fits in train: training runs without eval loss.
    from tpt.train import read_train_data

    train, evals = read_train_data(_write(tmp_path / "t.json", [REC]), _write(tmp_path / "e.json", []))
    assert len(train) == 1 and evals == []
