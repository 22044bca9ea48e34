"""Every official GSM8K reference solution scores correct against its own answer, and OpenAI's GPT-3
example solutions agree with OpenAI's own is_correct labels. Real files from ../shared/data/gsm8k.
Runtime budget: < 5 s.
"""
import json

import pytest

from tests.conftest import GSM8K
from tpt.extract import extract_answer, is_correct
from tpt.io import read_questions


@pytest.mark.parametrize("split,size", [("train", 7473), ("test", 1319)])
def test_every_reference_solution_is_correct(shared_data, split, size):
    questions = read_questions(str(GSM8K / f"{split}.jsonl"))
    assert len(questions) == size
    wrong = [q["idt"] for q in questions if not is_correct(extract_answer(q["solution"]), q["solnum"])]
    strict_wrong = [q["idt"] for q in questions
                    if not is_correct(extract_answer(q["solution"], "strict"), q["solnum"])]
    assert wrong == []
    assert strict_wrong == []  # the references are the format the prompt asks for


def test_openai_example_solutions_agree_with_openai_labels(shared_data):
    # Records: {question, ground_truth (ends "A: N"), 6b_finetuning, 6b_verification, 175b_finetuning,
    # 175b_verification}, each model entry {is_correct, solution (ends "A: N")}.
    total = agree = 0
    with open(GSM8K / "example_model_solutions.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            gold_line = rec["ground_truth"].strip().splitlines()[-1]
            assert gold_line.startswith("A: ")
            gold = gold_line[3:]
            for entry in (v for v in rec.values() if isinstance(v, dict)):
                total += 1
                agree += is_correct(extract_answer(entry["solution"]), gold) == entry["is_correct"]
    assert total == 5276
    assert agree / total >= 0.999
