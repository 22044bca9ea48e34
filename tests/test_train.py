"""tpt.train_data and tpt.train on real traces and the real embedded model, no training step: what TRL
builds is what Think samples.

Runtime budget: ~1.5 min measured on 2 busy cores at load ~7 (one SFTTrainer set-up, three forward passes).
The attention tests build a tiny random Gemma-2 (a few seconds).
"""
import json

import pytest

from tests.conftest import TPT_REF
from tpt.io import DataError
from tpt.prompt import build_prompt, encode_prompt

pytestmark = pytest.mark.slow  # a model loaded in every test (pytest -m 'not slow' leaves them out)

NUM = 8  # real traces per test


def _records(n=NUM, start=0):
    from tpt.io import read_questions

    return read_questions(TPT_REF / "math2b_2k.json")[start:start + n]


def _trainer(tmp_path, records, template="tpt", model=None, tokenizer=None, padding_free=False):
    """An SFTTrainer as tpt.train.train builds it (TRL's SFTConfig with TPT's defaults, adapted by configure)."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from tpt.models import resolve_model
    from tpt.train_args import TrainConfig
    from tpt.train_data import build_dataset
    from tpt.train import configure

    path = resolve_model("smollm2-135m")
    config = TrainConfig(output_dir=str(tmp_path / "out"), report_to="none", padding_free=padding_free)
    configure(config, str(tmp_path / "work"), str(tmp_path / "out"), False, {"dtype": "float32", "device_map": None})
    return SFTTrainer(
        model=model or path,
        args=config,
        train_dataset=build_dataset(records, template),
        processing_class=tokenizer or AutoTokenizer.from_pretrained(path),
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One SFTTrainer over real traces, as sft_math.py builds it, with the examples prepared."""
    from tpt.train_data import end_of_turn_id, prepare_examples

    records = _records()
    trainer = _trainer(tmp_path_factory.mktemp("train"), records, padding_free=True)
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


# "Q: {question}" is a user's own template: Think and Eval take it, so Train must too (one validator, check_template).
@pytest.mark.parametrize("template", ["tpt", "plain", "Q: {question}"])
def test_prompt_parity_for_each_template(tmp_path, template):
    # The prefix check of TRL's own tokenization, per template, on other real questions (from the test split).
    from transformers import AutoTokenizer

    from tpt.io import read_questions
    from tpt.models import resolve_model
    from tpt.train_data import build_dataset

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    records = read_questions(TPT_REF / "test500.json")[:4]
    for rec, ex in zip(records, build_dataset(records, template)):
        trl_prompt = tok.apply_chat_template(ex["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True)
        assert list(trl_prompt["input_ids"]) == encode_prompt(tok, rec["question"], template)


@pytest.mark.parametrize("template, ok", [
    ("tpt", True),                  # the original's wording, by name
    ("plain", True),                # the short named template
    ("Q: {question}", True),        # a user's own string holding {question}
    ("Solve it.", False),           # no {question}: the model would never see the problem
    ("tpt2", False),                # a misspelt name is not a template either
])
def test_one_template_check_for_every_stage(template, ok):
    # Think's check_config, Train's sft_math.py and the prompt builder all call tpt.prompt.check_template.
    from tpt.generate import SamplingConfig, add_generation_args, check_config
    from tpt.prompt import build_user_message, check_template

    import argparse

    parser = argparse.ArgumentParser()
    add_generation_args(parser, temperature=0.8)
    flags = vars(parser.parse_args(["--template", template])) | {"model_name": "m", "num_samples": 1}
    config = SamplingConfig.from_flags(flags)
    for call in (lambda: check_template(template), lambda: check_config(config),
                 lambda: build_user_message("What is 1 + 1?", template)):
        if ok:
            call()
        else:
            with pytest.raises(DataError, match="--template"):
                call()


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

    from tpt.train_data import check_examples

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
    from tpt.train_data import end_of_turn_id

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
    from tpt.train_data import end_of_turn_id, prepare_examples

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
    from tpt.train_data import drop_longer_than

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
    from tpt.train_data import read_train_data

    train_path = _write(tmp_path / "train.json", train) if train is not None else str(tmp_path / "nope.json")
    eval_path = _write(tmp_path / "eval.json", evals) if evals is not None else None
    with pytest.raises(DataError, match=message):
        read_train_data(train_path, eval_path)


def test_read_train_data_keeps_several_traces_per_question(tmp_path):
    # Kept-trace files may hold several correct traces of one question (same idt), as evmath.py can keep them.
    from tpt.train_data import read_train_data

    train, evals = read_train_data(_write(tmp_path / "t.json", [REC, dict(REC, solution="5\n#### 5")]))
    assert len(train) == 2 and evals == []


def test_read_train_data_accepts_an_empty_eval_file(tmp_path):
    # make_json.py writes an empty eval file when every kept trace fits in train: training runs without eval loss.
    from tpt.train_data import read_train_data

    train, evals = read_train_data(_write(tmp_path / "t.json", [REC]), _write(tmp_path / "e.json", []))
    assert len(train) == 1 and evals == []


def tiny_gemma2(folder):
    """A tiny random Gemma-2 (soft-capped attention logits, as the published models) with the embedded tokenizer,
    saved as a model folder. The config names no attention implementation: callers must choose one."""
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    from tpt.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    config = Gemma2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=32, max_position_embeddings=2048,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    import torch

    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config)
    # Random weights give tiny attention logits, which the cap (50) would never touch: scale the query projections
    # so that the cap is in play, as it is in the trained models.
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(400.0)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gemma_folder(tmp_path_factory):
    return str(tiny_gemma2(tmp_path_factory.mktemp("gemma2")))


@pytest.mark.parametrize("model, requested, expected", [
    # Gemma-2 soft-caps its attention logits: eager, which applies the cap, unless told otherwise
    ("gemma2", None, "eager"),
    # the user's choice wins (e.g. flash_attention_2, which caps too, for padding-free training)
    ("gemma2", "sdpa", "sdpa"),
    # a model without soft-capping keeps transformers' default
    ("smollm2-135m", None, None),
])
def test_pick_attn_implementation(gemma_folder, model, requested, expected):
    from transformers import AutoConfig

    from tpt.models import pick_attn_implementation, resolve_model

    config = AutoConfig.from_pretrained(gemma_folder if model == "gemma2" else resolve_model(model))
    assert pick_attn_implementation(config, requested) == expected


def test_sdpa_drops_gemma2_soft_capping(gemma_folder):
    # Why eager is picked: on the same weights, SDPA's logits differ from eager's (the cap is not applied).
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.arange(5, 45)[None]
    logits = {}
    for impl in ("eager", "sdpa"):
        model = AutoModelForCausalLM.from_pretrained(gemma_folder, attn_implementation=impl, dtype=torch.float32)
        with torch.no_grad():
            logits[impl] = model(ids).logits
    assert (logits["eager"] - logits["sdpa"]).abs().max() > 1e-3  # 2e-2 here; 4e-7 with the cap removed


def test_transformers_backend_loads_gemma2_with_eager(gemma_folder):
    # Think's transformers backend follows the same rule as Train.
    from transformers import AutoTokenizer

    from tpt.backends import EngineConfig, load_backend

    tok = AutoTokenizer.from_pretrained(gemma_folder)
    assert load_backend("hf", gemma_folder, tok).model.config._attn_implementation == "eager"
    sdpa = EngineConfig(attn_implementation="sdpa")
    assert load_backend("hf", gemma_folder, tok, sdpa).model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("requested, use_peft, bf16, expected", [
    # full fine-tuning keeps float32 master weights, with or without bf16 autocast: lr 1e-6 must move them
    (None, False, True, "float32"),
    (None, False, False, "float32"),
    # a LoRA base is frozen: it loads in the compute dtype
    (None, True, True, "bfloat16"),
    (None, True, False, "float32"),
    # the user's --dtype wins
    ("bfloat16", False, False, "bfloat16"),
])
def test_weight_dtype(requested, use_peft, bf16, expected):
    from tpt.train import weight_dtype

    assert weight_dtype(requested, use_peft, bf16) == expected


@pytest.mark.parametrize("n_gpu, fails", [
    # one process, one GPU (or none): fine
    (0, False),
    (1, False),
    # one process seeing 8 GPUs: transformers would wrap DataParallel, which TRL refuses after loading the model
    (8, True),
])
def test_one_process_per_gpu(n_gpu, fails):
    from tpt.train import check_one_process_per_gpu

    if fails:
        with pytest.raises(DataError, match="8 GPUs are visible to one process: launch one process per GPU"):
            check_one_process_per_gpu(n_gpu)
    else:
        check_one_process_per_gpu(n_gpu)


EVAL_INTERVALS = [
    # (flags, examples, (eval_steps, save_steps) as whole steps)
    ({}, 300, (10, 10)),  # 38 steps (300 traces, batch 2 x 4): a quarter of the run, rounded up
    ({"max_steps": 2}, 300, (2, 2)),  # a 2-step run: once, at its end, not at every step
    ({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "num_train_epochs": 2}, 22, (3, 3)),
    # the demo's batches: 6 steps an epoch x 2 = 12, a quarter is 3; 14 traces: 4 x 2 = 8 steps, the shortest at 0.25
    ({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "num_train_epochs": 2}, 14, (2, 2)),
    ({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "num_train_epochs": 1}, 14, (4, 4)),
    ({"eval_steps": 5, "save_steps": 0.5}, 300, (5, 19)),  # whole steps stay as given; each fraction on its own
]


@pytest.mark.parametrize("flags,examples,expected", EVAL_INTERVALS)
def test_fractional_intervals_become_whole_steps(tmp_path, flags, examples, expected):
    from tpt.train_args import TrainConfig
    from tpt.train import optimizer_steps, spread_intervals

    config = TrainConfig(output_dir=str(tmp_path / "out"), report_to="none", **flags)
    spread_intervals(config, optimizer_steps(config, examples))
    assert (config.eval_steps, config.save_steps) == expected
