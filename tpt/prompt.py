"""The one prompt builder: Think, Eval and Train all build prompts here.

The prompt is the model's own chat template around one user message. The default template ("tpt") is the
original TPT wording, whitespace included, because the paper's numbers were produced with it. The original
then trained on a different string (no chat template); here Train calls the same functions, so the tokens a
model is trained to continue are the tokens it was sampled from.

Eval's tasks (gen_eval.py --task): "tpt" is the prompt above; "gsm8k" and "gsm8k_cot" are lm-evaluation-harness's
tasks of those names, written from lm-eval 0.4.13's lm_eval/tasks/gsm8k/gsm8k.yaml and gsm8k-cot.yaml and its
api/task.py (fewshot_context, build_qa_turn), api/samplers.py (ContextSampler, FirstNSampler) and
models/huggingface.py (tok_batch_encode, generate_until), checked token for token against the harness itself
by bench/compare_lmeval.py (docs/scoring.md):
  * the prompt is plain text, no chat template (the harness's default; apply_chat_template puts the whole text
    in one user turn, as the harness does without fewshot_as_multiturn): each shot is its doc_to_text, the
    target delimiter " ", its target and the few-shot delimiter "\n\n"; then the question's doc_to_text.
    gsm8k: "Question: {question}\nAnswer:", the shot's target the whole GSM8K answer (worked solution with its
    <<calculator>> notes and `#### N`). gsm8k_cot: "Q: {question}\nA:", its 8 fixed shots (fewshot_config).
  * gsm8k's 5 shots come from the train split (fewshot_split: train, the "default" sampler): the harness seeds
    one random.Random(1234) per task and calls .sample(train, 5) once per test document, in the test split's
    order, so the shots of the question at row k of the test split are the k-th draw (fewshot_draws).
  * the ids: the tokenizer's own special tokens are added unless the text already opens with its BOS.
  * decoding: greedy, at most 256 new tokens (the harness's max_gen_toks), stopped by the task's `until` strings
    and the tokenizer's end token; the reply is cut before the first stop string (postprocess_generated_text).
"""
import dataclasses
import random
import re

from tpt.io import DataError

_PAD = " " * 20  # the original's f-string sat inside 20 spaces of code indentation, and the model saw them

_TPT_LINES = [
    "",
    "You are an expert mathematician. ",
    "You are provided with a math problem.",
    "Your task is to solve the problem step-by-step, clearly showing all relevant calculations and reasoning.",
    None,
    "# PROBLEM:",
    "{question}",
    "",
    "Requirements:",
    "1. Provide a complete and correct solution in a markdown block.",
    "2. Explain each step of the solution in detail.",
    "3. Conclude with the final numerical answer on a new line in the format `#### [Answer]`, "
    "replacing `[Answer]` with the actual answer.",
    None,
    "# SOLUTION:",
    "",
]
# None marks the original's truly empty lines; every other line after the first carries the indentation.
TPT_TEMPLATE = "\n".join(
    [_TPT_LINES[0]] + ["" if line is None else _PAD + line for line in _TPT_LINES[1:]]
)

PLAIN_TEMPLATE = (
    "Solve this math problem step by step, showing your calculations.\n\n"
    "{question}\n\n"
    "End with the final numerical answer alone on the last line, written as `#### <number>`."
)

TEMPLATES = {"tpt": TPT_TEMPLATE, "plain": PLAIN_TEMPLATE}

# Rationalization (STaR): Think's hinted pass puts the true answer right after the question. Only Think passes
# `hint`; Train builds every prompt from the question alone, so the model learns to reach the answer unaided.
HINT_TEXT = ("Hint: the correct final answer is {answer}. Work it out step by step as if you had not been told, "
             "and do not mention this hint.")


def check_template(template):
    """The template's text: `template` is a name in TEMPLATES or a string holding {question}. The one check Think,
    Train and Eval all make, so a template one stage takes no other stage refuses; anything else is a DataError."""
    text = TEMPLATES.get(template, template)
    if not isinstance(text, str) or "{question}" not in text:
        raise DataError(f"--template {template!r} is neither one of {sorted(TEMPLATES)} nor a string holding {{question}}")
    return text


def build_user_message(question, template="tpt", hint=None):
    """The user turn for one question. `template` is a name in TEMPLATES or a string holding {question};
    `hint` (Think's rationalization pass only) is the true answer, stated after the question."""
    text = check_template(template)
    question = question.strip()
    if hint is not None:
        question += "\n\n" + HINT_TEXT.format(answer=hint)
    return text.replace("{question}", question)


def build_messages(question, template="tpt", hint=None):
    """The conversation sent to the model: one user message."""
    return [{"role": "user", "content": build_user_message(question, template, hint)}]


def build_prompt(tokenizer, question, template="tpt", hint=None):
    """The full prompt string: the tokenizer's chat template with the generation prompt opened."""
    return tokenizer.apply_chat_template(
        build_messages(question, template, hint), tokenize=False, add_generation_prompt=True
    )


def encode_prompt(tokenizer, question, template="tpt", hint=None):
    """Token ids of build_prompt. The chat template already holds any BOS, so none is added twice."""
    return tokenizer(build_prompt(tokenizer, question, template, hint), add_special_tokens=False)["input_ids"]


def shared_prompt_ids(tokenizer, template="tpt"):
    """Token ids every prompt of `template` starts with: the chat template's opening and the template's words
    before {question} (the common start of two prompts that differ only in their question)."""
    first, second = encode_prompt(tokenizer, "0", template), encode_prompt(tokenizer, "x", template)
    shared = 0
    while shared < min(len(first), len(second)) and first[shared] == second[shared]:
        shared += 1
    return first[:shared]


# A hinted trace that says it was told the answer teaches the model to cite a hint Train never shows it.
_LEANS_ON_HINT_RE = re.compile(
    r"\bhint(?:s|ed)?\b"
    r"|\b(?:given|provided|stated|expected|supplied|known) (?:final )?answer\b"
    r"|\banswer (?:is|was) (?:already )?(?:given|provided|stated|supplied)\b"
    r"|\b(?:we|you|i) (?:are|were|was|am|have been) (?:told|given)\b[^.\n]{0,40}\banswer\b"
    r"|\bas (?:told|given|stated)\b[^.\n]{0,20}\banswer\b"
    r"|\b(?:the )?(?:problem|question) (?:says|states|tells us) (?:that )?the (?:final |correct )?answer\b",
    re.IGNORECASE)


def leans_on_hint(text):
    """True when a trace refers to the hint or to being given the answer (rationalization keeps none of these)."""
    return _LEANS_ON_HINT_RE.search(text) is not None


_PLACEHOLDER_HASH_RE = re.compile(r"#### \[Answer\]")
_PLACEHOLDER_RE = re.compile(r"(\*\*|####)?\s*\[Answer\](?:[:])?")


def clean_response(text):
    """Strip the `[Answer]` placeholder that models copy from the tpt template, as the original did."""
    text = _PLACEHOLDER_HASH_RE.sub("####", text.strip())
    return _PLACEHOLDER_RE.sub("", text)


# ---------------------------------------------------------------- lm-evaluation-harness's GSM8K tasks

LMEVAL_VERSION = "0.4.13"
FEWSHOT_SEED = 1234  # the harness's default fewshot_random_seed
LMEVAL_MAX_GEN_TOKS = 256  # the harness's default max_gen_toks (neither yaml sets one)

# gsm8k-cot.yaml's fewshot_config.samples: (question, target), in order (the first_n sampler takes them so).
COT_SHOTS = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have "
     "now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. "
     "5 + 4 = 9. The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
     "he had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8. The answer is 8."),
)


@dataclasses.dataclass(frozen=True)
class LMEvalTask:
    """One of the harness's generate_until tasks: its doc_to_text (with {question}), shots and stop strings.
    fixed_shots None: `num_fewshot` shots drawn from the train questions (fewshot_draws)."""
    name: str
    doc_to_text: str
    num_fewshot: int
    until: tuple
    fixed_shots: tuple | None = None


LMEVAL_TASKS = {
    "gsm8k": LMEvalTask("gsm8k", "Question: {question}\nAnswer:", 5, ("Question:", "</s>", "<|im_end|>")),
    "gsm8k_cot": LMEvalTask("gsm8k_cot", "Q: {question}\nA:", 8, ("Q:", "</s>", "<|im_end|>"), COT_SHOTS),
}
TASKS = ("tpt", *LMEVAL_TASKS)
_TARGET_DELIMITER, _FEWSHOT_DELIMITER = " ", "\n\n"


def check_task(task):
    if task not in TASKS:
        raise DataError(f"--task {task!r} is not one of {', '.join(TASKS)}")
    return task


def uses_fewshot_file(task):
    """Whether the task draws its shots from a train question file (--fewshot_file)."""
    return task in LMEVAL_TASKS and LMEVAL_TASKS[task].fixed_shots is None


def fewshot_draws(count, pool_size, k, seed=FEWSHOT_SEED):
    """The harness's shots for the first `count` test documents: the indices into the train pool of each draw,
    one random.Random(seed).sample(pool, k) after another (sample picks by position, so indices stand in for
    the documents)."""
    rnd = random.Random(seed)
    return [rnd.sample(range(pool_size), k) for _ in range(count)]


def fewshot_examples(task, questions, train):
    """Per question, its shots as (question, target) pairs: the task's fixed ones, or (gsm8k) the harness's draw
    for the question's row in the test split (its idt, as in GSM8K's own files and make_data.py's) from the
    train questions `train` (the whole train split, in order, for the harness's very shots). A shot that is
    one of the questions evaluated is a DataError: no test question may appear in its own prompt."""
    spec = LMEVAL_TASKS[check_task(task)] if task in LMEVAL_TASKS else None
    if spec is None:
        return [[] for _ in questions]
    if spec.fixed_shots is not None:
        return [list(spec.fixed_shots) for _ in questions]
    for i, q in enumerate(questions):
        if not isinstance(q["idt"], int) or q["idt"] < 0:
            raise DataError(f"--task {task} draws each question's shots by its row in GSM8K's test split (its "
                            f"idt): record {i} has idt {q['idt']!r}")
    if not train:
        raise DataError(f"--task {task}: the --fewshot_file holds no questions")
    evaluated = {_normal(q["question"]): q["idt"] for q in questions}
    for i, t in enumerate(train):
        if _normal(t["question"]) in evaluated:
            raise DataError(f"--fewshot_file: record {i} (idt {t['idt']!r}) is the evaluated question idt "
                            f"{evaluated[_normal(t['question'])]!r}; shots must come from other questions")
    draws = fewshot_draws(max(q["idt"] for q in questions) + 1, len(train), spec.num_fewshot)
    return [[(train[j]["question"], train[j]["solution"]) for j in draws[q["idt"]]] for q in questions]


def _normal(text):
    return " ".join(text.split()).lower()


def lmeval_text(task, question, shots):
    """The harness's plain-text context: each shot's doc_to_text, " ", its target, "\n\n"; then the question's."""
    spec = LMEVAL_TASKS[task]
    parts = [spec.doc_to_text.replace("{question}", q) + _TARGET_DELIMITER + a + _FEWSHOT_DELIMITER
             for q, a in shots]
    return "".join(parts) + spec.doc_to_text.replace("{question}", question)


def task_prompt(tokenizer, record, template="tpt", task="tpt", apply_chat_template=False):
    """The prompt string for one question record (its `hint` and, for the harness's tasks, its `shots`)."""
    if task == "tpt":
        return build_prompt(tokenizer, record["question"], template, record.get("hint"))
    text = lmeval_text(task, record["question"], record.get("shots", []))
    if not apply_chat_template:
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


def encode_task_prompt(tokenizer, text):
    """Token ids of a harness task's prompt: the tokenizer's special tokens unless the text opens with its BOS
    (the harness's rule; the tpt task's chat prompts go through encode_prompt)."""
    bos = tokenizer.bos_token
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


def encode_question(tokenizer, record, template="tpt", task="tpt", apply_chat_template=False):
    """Token ids of task_prompt: the one encoding Think and Eval feed both backends."""
    if task == "tpt":
        return encode_prompt(tokenizer, record["question"], template, record.get("hint"))
    return encode_task_prompt(tokenizer, task_prompt(tokenizer, record, template, task, apply_chat_template))


def stop_strings(task):
    """The strings that end a reply of this task: its `until` (none for tpt). The harness also adds the end
    token's text; both backends already stop on that token by its id."""
    return list(LMEVAL_TASKS[task].until) if task in LMEVAL_TASKS else []
