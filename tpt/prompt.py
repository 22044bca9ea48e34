"""The one prompt builder: Think, Eval and Train all build prompts here.

The prompt is the model's own chat template around one user message. The default template ("tpt") is the
original TPT wording, whitespace included, because the paper's numbers were produced with it. The original
then trained on a different string (no chat template); here Train calls the same functions, so the tokens a
model is trained to continue are the tokens it was sampled from.
"""
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
