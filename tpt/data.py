"""Question files for TPT: GSM8K for real runs, reasoning-gym problems for the offline demo, and the leakage guard.

Every function returns question records {idt, question, solution, solnum} (the seed's format, solnum a string);
make_data.py writes them. A train set and a test set must never share a question: check_disjoint compares them by
normalised text (tpt.io.normalize_text) and raises DataError naming both files and the first shared record.
"""
import json
import os
import random

from tpt.io import DataError, gsm8k_final_number, normalize_text, parse_questions, read_questions
from tpt.split import find_overlap

GSM8K_HUB_ID = "openai/gsm8k"

# The demo's task, chosen by measuring the embedded model (docs/data.md has the rates): smollm2-135m
# solves almost no gsm_symbolic problem and few two-digit sums, but enough one-digit sums and differences
# for a round to keep traces. The whole space is 242 distinct questions, so repeats are dropped.
DEMO_TASK = "basic_arithmetic"
DEMO_TASK_CONFIG = {
    "min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1,
    "operators": ["+", "-"], "allow_parentheses": False, "allow_negation": False,
}


def gsm8k_from_dir(gsm8k_dir):
    """(train, test) question records from local GSM8K files {gsm8k_dir}/train.jsonl and test.jsonl."""
    return tuple(read_questions(os.path.join(gsm8k_dir, f"{split}.jsonl")) for split in ("train", "test"))


def gsm8k_from_hub():
    """(train, test) question records from the hub's openai/gsm8k 'main' (needs the `datasets` package and internet)."""
    try:
        import datasets
    except ImportError:
        raise DataError("the hub source needs the 'datasets' package: .venv/bin/pip install datasets "
                        "(or pass --gsm8k_dir with local train.jsonl/test.jsonl)") from None
    try:
        ds = datasets.load_dataset(GSM8K_HUB_ID, "main")
    except Exception as e:  # offline, hub down, no access: one line, and the local route
        raise DataError(f"could not load {GSM8K_HUB_ID} from the hub ({type(e).__name__}: {e}); "
                        "pass --gsm8k_dir with local train.jsonl/test.jsonl") from None
    return tuple(parse_questions(list(ds[split]), f"{GSM8K_HUB_ID}:{split}") for split in ("train", "test"))


def random_subset(questions, size, seed):
    """`size` questions drawn without replacement with `seed`, kept in file order (like the seed's test500)."""
    if not 1 <= size <= len(questions):
        raise DataError(f"subset size must be between 1 and {len(questions)}, got {size}")
    picked = sorted(random.Random(seed).sample(range(len(questions)), size))
    return [questions[i] for i in picked]


def _number_text(value, where):
    """The answer as a plain number string, or DataError: TPT scores numeric answers only."""
    text = str(value).strip()
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        raise DataError(f"{where}: answer {text!r} is not a number (choose a task with numeric answers)") from None
    return str(int(number)) if number.is_integer() else text


def gym_questions(task, size, seed, config=None):
    """`size` reasoning-gym problems as question records; idt = the generator's index, so
    reasoning_gym.create_dataset(task, size=size, seed=seed, **config)[idt] regenerates a record."""
    import reasoning_gym

    try:
        dataset = reasoning_gym.create_dataset(task, size=size, seed=seed, **(config or {}))
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise DataError(f"reasoning-gym task {task!r} with config {json.dumps(config)}: {e}") from None
    out = []
    for i, item in enumerate(dataset):
        solnum = _number_text(item["answer"], f"reasoning-gym {task} seed {seed}: record {i}")
        meta = item.get("metadata") or {}
        steps = meta.get("answer_cot") or (f"{meta['expression']} = {solnum}" if meta.get("expression") else "")
        solution = steps.strip() if gsm8k_final_number(steps.strip()) else f"{steps.strip()}\n#### {solnum}".lstrip()
        out.append({"idt": i, "question": item["question"], "solution": solution, "solnum": solnum})
    return out


def drop_duplicates(questions):
    """(questions without repeats of an earlier normalised question, number dropped)."""
    seen, out = set(), []
    for q in questions:
        key = normalize_text(q["question"])
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out, len(questions) - len(out)


def drop_overlap(train_questions, test_questions):
    """(train questions whose normalised text is not in the test set, number dropped)."""
    shared = {i for i, _ in find_overlap(train_questions, test_questions)}
    return [q for i, q in enumerate(train_questions) if i not in shared], len(shared)


def check_disjoint(train_questions, test_questions, train_path, test_path):
    """Raise DataError naming both files and the first shared question when train and test overlap."""
    pairs = find_overlap(train_questions, test_questions)
    if pairs:
        i, j = pairs[0]
        text = normalize_text(train_questions[i]["question"])
        short = text if len(text) <= 60 else text[:57] + "..."
        raise DataError(
            f"{train_path}: record {i} (idt {train_questions[i]['idt']!r}) is also {test_path}: record {j} "
            f"(idt {test_questions[j]['idt']!r}) {short!r}; {len(pairs)} train question(s) overlap the test set"
        )


def make_gym_split(task, train_size, test_size, train_seed, test_seed, config=None):
    """(train, test, counts): disjoint train and test sets from two distant seeds; repeats and overlap leave train.

    counts: {train_generated, test_generated, test_duplicates, train_duplicates, train_overlap}.
    """
    # reasoning-gym draws item i from Random(seed + i): seeds closer than the two sizes share items outright.
    if abs(train_seed - test_seed) < train_size + test_size:
        raise DataError(f"train and test seeds {train_seed} and {test_seed} must differ by at least train_size + "
                        f"test_size = {train_size + test_size} (reasoning-gym seeds item i with seed + i)")
    test, test_dups = drop_duplicates(gym_questions(task, test_size, test_seed, config))
    generated = gym_questions(task, train_size, train_seed, config)
    train, train_dups = drop_duplicates(generated)
    train, overlap = drop_overlap(train, test)
    check_disjoint(train, test, "train", "test")
    counts = {"train_generated": train_size, "test_generated": test_size, "test_duplicates": test_dups,
              "train_duplicates": train_dups, "train_overlap": overlap}
    return train, test, counts
