"""The one answer extractor: what number did a solution give as its final answer?

Policy (mode "answer", the default): the final stated answer wherever and however the model wrote it.
  1. The rest of the line after the LAST `####`. Markdown (`**`, `__`, backticks), `\\boxed{}`, LaTeX
     `\\text{}` and `\\frac{}{}`, "Answer:"/"The answer is" labels, `$`, `%` and unit words are ignored; an
     equation chain (`#### 36 - 27 = 9`) gives its result, the number after the last `=`; otherwise the first
     number on the line. A marker alone on its line takes the next line if that line is a bare number.
  2. Else (no marker, or nothing numeric after it) the last `\\boxed{...}` that holds a number.
  3. Else the last "the answer is N" / "final answer: N" phrase, or a line opening with "Answer:" or "A:";
     a label alone on its line takes the next line if it is a bare number or holds a **bold** number.
  4. Else a bare number alone on the last line (markdown, `$`, `%` and one unit word allowed), or a last line
     that is pure arithmetic ending in `= N` (`1 + 1 = 2`, as small models answer), closing pleasantries such
     as "Let me know if ..." skipped.
  Anything else is "no answer" (None), which is counted apart from a wrong answer.
Mode "strict": `#### <number>` exactly as the prompt asks: the line of the last `####` (bold around it
allowed) holds only the marker and one plain number (sign, digits, thousands commas, decimals).

Reference modes, kept to compare scorers (bench/compare_scorers.py), never used to train on:
  "tpt_original": the original TPT evmath.py: the FIRST `####\\s*(-?[\\d.,]+)`, compared as a string.
  "lmeval_strict" / "lmeval_flexible": lm-evaluation-harness's gsm8k.yaml (`#### (\\-?[0-9\\.\\,]+)`, first
  match; the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`), compared after its exact_match cleaning (case
  folded; commas, `$`, everything up to `#### ` and a trailing `.` removed).

Our modes return numbers in one canonical spelling ('500', '-0.25', '160/3'): equal values give equal
strings (`500.00` == `500`, `2,125` == `2125`, `9/8` == `1.125`), so comparing and voting are exact.
Nothing the model wrote is ever evaluated as code.
"""
import functools
import re
from fractions import Fraction

MODES = ("answer", "strict")
REFERENCE_MODES = ("tpt_original", "lmeval_strict", "lmeval_flexible")

# A number as people write it: sign, digits with thousands commas in any grouping (gemma writes both
# 1,300,000 and 1,30,000), a decimal part, or a simple fraction a/b. A comma followed by a space is
# punctuation ("36 candles, 20 flashlights"), never a separator.
_NUM = r"[-−]?(?:\d+(?:,\d+)*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+(?:\.\d+)?)?"
NUMBER_RE = re.compile(r"(?<![\w.])" + _NUM)
_STRICT_RE = re.compile(r"[ \t]*####[ \t]*(-?\d+(?:,\d+)*(?:\.\d+)?)[ \t]*$")
_PLAIN_AFTER_MARKER_RE = re.compile(r"[ \t]*(-?\d+(?:,\d+)*(?:\.\d+)?)[ \t]*$")  # the fast path
_LATEX_RE = re.compile(r"\\\(|\\\)|\\\[|\\\]|\\,|\\!|\\;|\\quad")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}")
_LABEL_RE = re.compile(r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|=|:)?\s*:?\s*", re.IGNORECASE)
# "The answer is N", "Final answer: N", or a line that starts with "Answer:" or "A:" (after markdown or a
# list number; OpenAI's GSM8K samples end "A: 18", while "A = S + 5" is algebra); "Analyze the Answer:" is
# a heading, not a statement, so a bare "answer:" must open its line.
_ANSWER_PHRASE_RE = re.compile(
    r"(?:final\s+answer\s*(?:is|:|=)?|answer\s+is|^[\s*#_>-]*(?:\d+\.\s*)?[\s*_]*(?:answer\s*[:=]|a\s*:))[ \t:*_=]*",
    re.IGNORECASE | re.MULTILINE)
# Closing pleasantries after the answer ("Let me know if ...") are not part of the solution.
_SIGN_OFF_RE = re.compile(r"\W*(?:let me know|i hope|please let me know|feel free|if you have|do you have)",
                          re.IGNORECASE)
_BOLD_NUMBER_RE = re.compile(r"\*\*[^*\n]*?\d[^*\n]*?\*\*")
# A last line of digits and operators only, ending "= N": the result is stated, no words around it.
_EQUATION_LINE_RE = re.compile(r"(?=[^=]*\d)[-−+*/×÷^().,\d\s]+=\s*(-?[\d,]*\.?\d+)\s*\.?\s*$")
_BARE_LINE_RE = re.compile(r"[-−]?\s*(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?\s*%?\s*[A-Za-z]*\s*\.?$")

_TPT_ORIGINAL_RE = re.compile(r"####\s*(-?[\d.,]+)")
_LMEVAL_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
_LMEVAL_FLEX_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_LMEVAL_IGNORE = [re.compile(p) for p in (r",", r"\$", r"(?s).*#### ", r"\.$")]


def canonical(value):
    """A Fraction in the one spelling votes and comparisons use: '500', '-0.25' (exact decimals), '160/3'."""
    if value.denominator == 1:
        return str(value.numerator)
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:  # a repeating decimal: keep the fraction
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    whole, frac = divmod(abs(value.numerator) * 10 ** places // value.denominator, 10 ** places)
    return f"{'-' if value < 0 else ''}{whole}.{frac:0{places}d}".rstrip("0")


def _number_token(token):
    """The canonical spelling of one NUMBER_RE match, or None (zero denominator, absurd length)."""
    if token.isascii() and token.isdigit() and (token[0] != "0" or len(token) == 1) and len(token) < 4000:
        return token  # already canonical: the common case
    s = token.replace("−", "-").replace(",", "").replace(" ", "")
    try:
        if "/" in s:
            num, den = s.split("/")
            return canonical(Fraction(num) / Fraction(den)) if Fraction(den) else None
        negative = s.startswith("-")
        s = s.lstrip("-")
        if "." in s:  # an exact decimal without building a Fraction: the hot path of scoring
            whole, frac = s.split(".")
            frac = frac.rstrip("0")
            s = str(int(whole or "0")) + ("." + frac if frac else "")
        else:
            s = str(int(s))
    except (ValueError, ZeroDivisionError):
        return None
    return "-" + s if negative and s != "0" else s


@functools.lru_cache(maxsize=1 << 16)
def number_text(text):
    """The canonical spelling of the first number written in text ('$2,125.50' -> '2125.5'), or None."""
    if text is None:
        return None
    m = NUMBER_RE.search(text.replace("$", ""))
    return _number_token(m.group(0)) if m else None


def parse_number(text):
    """The exact value of the first number written in text ('2,125', '-3.50', '1/2', '$500'), or None."""
    spelled = number_text(text)
    return None if spelled is None else Fraction(spelled)


def _clean_line(line):
    """A line with markdown, LaTeX wrappers and currency signs taken off, so only words and numbers remain."""
    if "\\" in line:
        line = _FRAC_RE.sub(r"\1/\2", line)
        line = _TEXT_RE.sub(r" \1 ", line)
        line = _BOXED_RE.sub(" ", line).replace("\\$", "$").replace("\\%", "%")
        line = _LATEX_RE.sub(" ", line)
    if "{" in line or "}" in line:
        line = line.replace("{", " ").replace("}", " ")
    line = line.replace("**", " ").replace("__", " ").replace("`", " ")
    if "$" in line:
        line = line.replace("-$", "-").replace("−$", "-").replace("$", " ")
    return line.strip(" \t*_#:")


def _number_in_statement(line):
    """The answer in one stated line: the result of an equation chain, else the first number."""
    line = _clean_line(line)
    if _LABEL_RE.match(line):
        line = _LABEL_RE.sub(" ", line, count=1)
    if "=" in line:
        tail = line.rsplit("=", 1)[1]
        if NUMBER_RE.search(tail):
            line = tail
    m = NUMBER_RE.search(line)
    return _number_token(m.group(0)) if m else None


def _bare_number(line):
    """The number of a cleaned line that is only a number (with %, a unit word, a full stop), or None."""
    if line[0] not in "-−.0123456789":  # cheap test before the regex
        return None
    return number_text(line) if _BARE_LINE_RE.match(line) else None


def _next_content_line(lines, start):
    """The first of lines[start:] that has text once cleaned, as (cleaned, raw), or (None, None)."""
    for raw in lines[start:]:
        line = _clean_line(raw)
        if line:
            return line, raw
    return None, None


def _last_content_line(lines):
    """The last cleaned line with text, closing pleasantries skipped, or None."""
    for raw in reversed(lines):
        if raw.isspace() or not raw:
            continue
        line = _clean_line(raw)
        if line and not _SIGN_OFF_RE.match(line):
            return line
    return None


def _last_boxed(text):
    """The contents of the last \\boxed{...} that holds a number (braces balanced), or None."""
    if "box" not in text:
        return None
    for m in reversed(list(_BOXED_RE.finditer(text))):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        inner = text[m.end():i - 1] if depth == 0 else text[m.end():]
        if NUMBER_RE.search(inner.replace("$", "")):
            return inner
    return None


def _labelled_value(lines):
    """The value after the last answer phrase (see the policy above), or None."""
    for i in range(len(lines) - 1, -1, -1):
        low = lines[i].lower()
        if "answer" not in low and "a:" not in low and "a :" not in low:  # cheap test before the regex
            continue
        for m in reversed(list(_ANSWER_PHRASE_RE.finditer(lines[i]))):
            rest = lines[i][m.end():]
            if _clean_line(rest):
                value = _number_in_statement(rest)
            else:
                line, raw = _next_content_line(lines, i + 1)
                if line is None:
                    continue
                value = _bare_number(line)
                if value is None:
                    bold = _BOLD_NUMBER_RE.search(raw)
                    value = _number_in_statement(bold.group(0)) if bold else None
            if value is not None:
                return value
    return None


def _answer_text(text):
    pos = text.rfind("####")
    if pos >= 0:
        end = text.find("\n", pos)
        line = text[pos + 4:] if end < 0 else text[pos + 4:end]
        plain = _PLAIN_AFTER_MARKER_RE.match(line)
        if plain:
            return _number_token(plain.group(1))
        if _clean_line(line):
            value = _number_in_statement(line)
            if value is not None:
                return value
        elif end >= 0:  # "####" alone, then the answer alone on a following line
            following, _ = _next_content_line(text[end + 1:].split("\n"), 0)
            value = following and _bare_number(following)
            if value:
                return value
    boxed = _last_boxed(text)
    if boxed is not None:
        return _number_in_statement(boxed)
    lines = text.split("\n")
    low = text.lower()
    if "answer" in low or "a:" in low or "a :" in low:
        value = _labelled_value(lines)
        if value is not None:
            return value
    last = _last_content_line(lines)
    if not last:
        return None
    value = _bare_number(last)
    if value is None and "=" in last:
        m = _EQUATION_LINE_RE.match(last)
        value = _number_token(m.group(1)) if m else None
    return value


def _strict_text(text):
    pos = text.rfind("####")
    if pos < 0:
        return None
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = (text[start:] if end < 0 else text[start:end]).replace("**", "").replace("__", "")
    m = _STRICT_RE.match(line)
    return _number_token(m.group(1)) if m else None


def extract_pair(text):
    """(answer, strict) for one solution, sharing the work when the marker line is `#### N` (bold or `$`
    allowed), the common case; anything else goes through both modes in full."""
    pos = text.rfind("####")
    if pos >= 0:
        end = text.find("\n", pos)
        rest = (text[pos + 4:] if end < 0 else text[pos + 4:end]).replace("**", "").replace("__", "")
        plain = _PLAIN_AFTER_MARKER_RE.match(rest)
        dollar = None if plain or "$" not in rest else _PLAIN_AFTER_MARKER_RE.match(rest.replace("$", "", 1))
        if plain or dollar:
            value = _number_token((plain or dollar).group(1))
            prefix = text[text.rfind("\n", 0, pos) + 1:pos].replace("**", "").replace("__", "")
            return value, (value if plain and not prefix.strip(" \t") else None)
    return _answer_text(text), _strict_text(text)


def _lmeval_clean(s):
    for pattern in _LMEVAL_IGNORE:
        s = pattern.sub("", s)
    return s.strip().lower()


def extract_answer(text, mode="answer"):
    """The final answer of one solution, canonically spelled ('500', '0.5'), or None for no answer.

    Reference modes return the raw matched text, which is what those scorers compared.
    """
    if mode == "answer":
        return _answer_text(text)
    if mode == "strict":
        return _strict_text(text)
    if mode == "tpt_original":
        m = _TPT_ORIGINAL_RE.search(text)
        return m.group(1).strip() if m else None
    if mode == "lmeval_strict":
        m = _LMEVAL_STRICT_RE.search(text)
        return m.group(1).strip() if m else None
    if mode == "lmeval_flexible":
        matches = _LMEVAL_FLEX_RE.findall(text)
        return next(g for g in matches[-1] if g).strip() if matches else None
    raise ValueError(f"unknown extraction mode {mode!r}; choose from {MODES + REFERENCE_MODES}")


def is_correct(extracted, gold, mode="answer"):
    """Whether an extracted answer equals the gold answer (solnum as written, e.g. '2,125').

    Our modes compare exact values; reference modes compare strings the way their scorer did.
    """
    if extracted is None:
        return False
    if mode == "tpt_original":
        return extracted == gold
    if mode in ("lmeval_strict", "lmeval_flexible"):
        return _lmeval_clean(extracted) == _lmeval_clean(gold)
    gold_text = number_text(gold)
    return gold_text is not None and number_text(extracted) == gold_text
