"""Eval's lm-evaluation-harness tasks (gen_eval.py --task gsm8k / gsm8k_cot): the prompt for real GSM8K test
questions as the harness's task files define it, its filters on real endings, shots that never hold an evaluated
question, the task in the fingerprint, and gen_eval.py itself as a subprocess on 2 questions.

The expectations are built here from the harness's documented format (lm-eval 0.4.13, lm_eval/tasks/gsm8k/
gsm8k.yaml and gsm8k-cot.yaml: doc_to_text, target " ", shots joined by a blank line), not from tpt.prompt. The
train rows of the harness's own draws for test rows 0 and 1 were read from the prompts the real harness built
(bench/lmeval_prompts.py, run by bench/compare_lmeval.py --prompts_only, docs/scoring.md): they pin the sampler,
random.Random(1234).sample per test document in order. The comparison with the whole harness, token for token,
is bench/compare_lmeval.py.
"""
import json
import subprocess

import pytest

from tpt.extract import LMEVAL_FILTERS, extract_answer, is_correct
from tpt.generate import SamplingConfig, sampling_stage
from tpt.io import DataError, read_questions
from tpt.prompt import encode_question, fewshot_examples, stop_strings, task_prompt

from conftest import GSM8K, PYTHON, ROOT

# The harness's shots (train split rows) for test rows 0 and 1, found in the prompts it built.
HARNESS_SHOT_ROWS = {0: [6374, 3610, 957, 61, 742], 1: [7462, 6610, 4769, 286, 5501]}
# gsm8k-cot.yaml's first and last fewshot_config samples (question opening, target).
COT_FIRST = ("There are 15 trees in the grove.", "So there must have been 21 - 15 = 6. The answer is 6.")
COT_LAST = ("Olivia has $23. She bought five bagels for $3 each.", "23 - 15 is 8. The answer is 8.")


@pytest.fixture(scope="module")
def gsm8k():
    return read_questions(GSM8K / "train.jsonl"), read_questions(GSM8K / "test.jsonl")


@pytest.fixture(scope="module")
def tokenizer():
    from tpt.generate import load_tokenizer
    from tpt.models import resolve_model

    return load_tokenizer(resolve_model("smollm2-135m"))


def expected_gsm8k(train, question, rows):
    # gsm8k.yaml: doc_to_text "Question: {{question}}\nAnswer:", doc_to_target "{{answer}}" (the whole solution)
    shots = "".join(f"Question: {train[r]['question']}\nAnswer: {train[r]['solution']}\n\n" for r in rows)
    return shots + f"Question: {question['question']}\nAnswer:"


PROMPT_CASES = [
    # (task, test row): the harness's plain-text prompt (no chat template, its default)
    ("gsm8k", 0),  # Janet's ducks, the first test question: the first draw of the harness's sampler
    ("gsm8k", 1),  # the second question gets the second draw, not a fresh one
    ("gsm8k_cot", 0),  # the 8 fixed chain-of-thought shots, in the yaml's order
    ("gsm8k_cot", 1),  # the same 8 for every question
]


@pytest.mark.parametrize("task,row", PROMPT_CASES)
def test_prompt_is_the_harness_format(gsm8k, tokenizer, task, row):
    train, test = gsm8k
    q = test[row]
    record = dict(q, shots=fewshot_examples(task, [q], train)[0])
    text = task_prompt(tokenizer, record, task=task)
    if task == "gsm8k":
        assert text == expected_gsm8k(train, q, HARNESS_SHOT_ROWS[row])
    else:
        turns = text.split("\n\n")
        assert len(turns) == 9 and all(t.startswith("Q: ") and "\nA: " in t for t in turns[:8])
        assert turns[0].startswith("Q: " + COT_FIRST[0]) and turns[0].endswith(COT_FIRST[1])
        assert turns[7].startswith("Q: " + COT_LAST[0]) and turns[7].endswith(COT_LAST[1])
        assert turns[8] == f"Q: {q['question']}\nA:"
    # plain text: the tokenizer's own special tokens (none for SmolLM2), no chat markup
    assert encode_question(tokenizer, record, task=task) == tokenizer(text)["input_ids"]
    assert "<|im_start|>" not in text


@pytest.mark.parametrize("task", ["gsm8k", "gsm8k_cot"])
def test_apply_chat_template_puts_the_whole_text_in_one_user_turn(gsm8k, tokenizer, task):
    # the harness without fewshot_as_multiturn: one user message holding the plain text, the reply opened
    train, test = gsm8k
    record = dict(test[0], shots=fewshot_examples(task, [test[0]], train)[0])
    plain = task_prompt(tokenizer, record, task=task)
    chat = task_prompt(tokenizer, record, task=task, apply_chat_template=True)
    assert chat == tokenizer.apply_chat_template([{"role": "user", "content": plain}], tokenize=False,
                                                 add_generation_prompt=True)
    assert chat.endswith("<|im_start|>assistant\n") and plain in chat
    # the chat text opens with the BOS text: no second one is added
    assert encode_question(tokenizer, record, task=task, apply_chat_template=True) == tokenizer(
        chat, add_special_tokens=False)["input_ids"]


def test_stop_strings_are_the_yaml_until():
    assert stop_strings("gsm8k") == ["Question:", "</s>", "<|im_end|>"]
    assert stop_strings("gsm8k_cot") == ["Q:", "</s>", "<|im_end|>"]
    assert stop_strings("tpt") == []  # the TPT prompt ends at the end token only, as before


FILTER_CASES = [
    # (task, filter, ending, gold, the harness's answer (None = "[invalid]"), counted correct)
    ("gsm8k", "strict-match", "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18", "18", "18", True),
    ("gsm8k", "strict-match", "#### 1,000", "1000", "1,000", True),  # the comma is ignored by exact_match
    ("gsm8k", "strict-match", "#### 18 and later #### 20", "20", "18", False),  # the first marker counts
    ("gsm8k", "strict-match", "####18", "18", None, False),  # the space after #### is required
    ("gsm8k", "strict-match", "The answer is 18.", "18", None, False),  # no marker, no strict answer
    ("gsm8k", "flexible-extract", "16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars", "18", "18", True),  # the last number
    ("gsm8k", "flexible-extract", "She makes $18.00 a day.", "18", "$18.00", False),  # 18.00 != 18 as a string
    ("gsm8k", "flexible-extract", "She makes $18.", "18", "$18.", True),  # `$` and a final `.` are ignored
    ("gsm8k", "flexible-extract", "no digits at all", "18", None, False),
    ("gsm8k_cot", "strict-match", "9 * 2 = 18. The answer is 18.", "18", "18", True),
    ("gsm8k_cot", "strict-match", "The answer is 18", "18", "1", False),  # its `.` eats the last digit at the end
    ("gsm8k_cot", "strict-match", "The answer is $18.", "18", None, False),  # `$` is not in the group
    ("gsm8k_cot", "strict-match", "The answer is 18. Q", "18", "18.", True),  # the group keeps `.`; ignored after
    ("gsm8k_cot", "flexible-extract", "The answer is $18.", "18", "$18.", True),
    ("tpt", "strict-match", "#### **18**", "18", None, False),  # tpt is read with gsm8k's filters: bold breaks it
]


@pytest.mark.parametrize("task,name,text,gold,answer,correct", FILTER_CASES)
def test_harness_filters(task, name, text, gold, answer, correct):
    mode = LMEVAL_FILTERS[task][name]
    assert extract_answer(text, mode) == answer
    assert is_correct(extract_answer(text, mode), gold, mode) is correct


def test_gsm8k_shots_never_hold_an_evaluated_question(gsm8k):
    train, test = gsm8k
    questions = test[:200]
    evaluated = {q["question"] for q in questions}
    shots = fewshot_examples("gsm8k", questions, train)
    assert all(len(s) == 5 and not evaluated & {t for t, _ in s} for s in shots)
    # drawn from the train split: every shot is a train question with its own solution
    by_text = {t["question"]: t["solution"] for t in train}
    assert all(by_text[t] == a for s in shots for t, a in s)


BAD_FEWSHOT = [
    # (few-shot pool, questions evaluated, what the one line says)
    ("test", slice(0, 3), "is the evaluated question"),  # the test file itself as --fewshot_file
    ("train_plus_one", slice(5, 6), "is the evaluated question"),  # one evaluated question slipped into train
    ("empty", slice(0, 2), "holds no questions"),
]


@pytest.mark.parametrize("pool,which,message", BAD_FEWSHOT)
def test_fewshot_file_that_holds_an_evaluated_question_is_refused(gsm8k, pool, which, message):
    train, test = gsm8k
    pools = {"test": test, "train_plus_one": train[:100] + [test[5]], "empty": []}
    with pytest.raises(DataError, match=message):
        fewshot_examples("gsm8k", test[which], pools[pool])


def test_questions_without_a_test_row_are_refused(gsm8k):
    train, test = gsm8k
    with pytest.raises(DataError, match="row in GSM8K's test split"):
        fewshot_examples("gsm8k", [dict(test[0], idt="q-0")], train)


def test_task_is_in_the_fingerprint(gsm8k):
    train, test = gsm8k
    base = dict(model_name="m", num_samples=1, temperature=0.0, top_p=1.0, max_tokens=8, max_model_len=0, seed=0,
                backend="hf", batch_size=4, dtype="float32", tensor_parallel_size=1, data_parallel_size=1,
                enforce_eager=False, attn_implementation=None, gpu_memory_utilization=0.9, template="tpt",
                trust_remote_code=False)
    prints = []
    for task, chat in (("tpt", False), ("gsm8k", False), ("gsm8k", True), ("gsm8k_cot", False)):
        qs = [dict(q, shots=s) for q, s in zip(test[:2], fewshot_examples(task, test[:2], train))]
        config = SamplingConfig(**base, task=task, apply_chat_template=chat)
        flags = {"limit": 2, "task": task, "apply_chat_template": chat}  # as gen_eval.py passes them
        prints.append(sampling_stage("Eval", config, qs, "unused", flags).fingerprint)
    assert len({json.dumps(p, sort_keys=True) for p in prints}) == 4
    assert [p["task"] for p in prints] == ["tpt", "gsm8k", "gsm8k", "gsm8k_cot"]


def test_gen_eval_task_gsm8k_subprocess(tmp_path):
    out = tmp_path / "gsm8k"
    cmd = [PYTHON, str(ROOT / "gen_eval.py"), "--task", "gsm8k", "--questions", str(GSM8K / "test.jsonl"),
           "--fewshot_file", str(GSM8K / "train.jsonl"), "--limit", "2", "--max_tokens", "6", "--backend", "hf",
           "--dtype", "float32", "--samples_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "pass_at_k_results.json").read_text())
    # the harness's defaults for its task: one greedy sample, both filters reported under their names
    assert summary["task"] == "gsm8k" and summary["num_samples"] == 1
    assert set(summary["lmeval_filters"]) == {"lmeval_strict_match", "lmeval_flexible_extract"}
    assert all(f"{k}_pass@1" in summary for k in summary["lmeval_filters"])
    scored = json.loads((out / "scored.json").read_text())
    samples = json.loads((out / "e0.json").read_text())
    for row, sample in zip(scored, samples):
        # the reply is kept as generated (the harness's leading space included), read by both filters
        assert row["lmeval_flexible_extract"] == extract_answer(sample["solution"], "lmeval_flexible")
        assert sample["num_tokens"] <= 6
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"]["task"] == "gsm8k" and manifest["fingerprint"]["temperature"] == 0.0
    assert "Question: Janet" in proc.stdout  # the first prompt is shown
    # the same folder with another task: refused in one line, nothing rewritten
    before = (out / "e0.json").read_bytes()
    again = subprocess.run(cmd[:3] + ["gsm8k_cot"] + cmd[4:], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode != 0 and "task: 'gsm8k' -> 'gsm8k_cot'" in again.stderr
    assert (out / "e0.json").read_bytes() == before
