"""The one answer extractor: what number did a solution give as its final answer?

Policy (mode "answer", the default): the answer is the quantity the solution asserts at its end. An
ambiguous assertion (a range, a hedge "12 or 13", a list, a clock time that is not on the hour, a decimal
comma, a number that only appears inside prose) is no answer, never a lucky right: a wrong answer scored
correct is the worst error a scorer can make.
  1. The line of the last `####` that is an answer marker: a `####` heading of words (`#### Explanation`,
     `#### Step 2: Final`, `#### Note: ...`, or any `####` line of words with more of the solution after it)
     is skipped. Markdown, `\\boxed{}`, LaTeX (`\\frac`, `\\text`, `{,}` and `\\,` thousands separators),
     "Answer:" labels, `$`, `%`, units and superscripts are ignored. The line states one quantity: a number
     (`#### $1,450`, `#### 180 minutes`), an equation that asserts a number then explains it (`#### 12 = 3 x 4`
     -> 12) or derives it (`#### 3 x 4 = 12` -> 12), or a sentence holding exactly one number (`#### Tommy
     caught 14 fish.`). A marker alone on its line takes the next line if that line is a bare number.
  2. Else the last `\\boxed{...}` that holds a number, read the same way.
  3. Else the last "the answer is N" / "final answer: N" phrase, or a line opening with "Answer:" or "A:";
     a label alone on its line takes the next line if it is a bare number or holds a **bold** number.
  4. Else a bare number alone on the last line (markdown, `$`, `%`, one unit word and a superscript
     allowed), or a last line that is pure arithmetic ending in `= N` (`1 + 1 = 2`, as small models answer);
     closing pleasantries ("Let me know if ...", "Hope this helps!", "Good luck!", a short exclamation with no
     number) skipped.
  Numbers: thousands separators only in real groupings (`2,125`, `1,30,000`; `2,5` and `2,4,6` are not one
  number); `H:00` is the hour H (GSM8K writes "2:00 pm" as 2); `1.5e3` and `1.5 x 10^3` are 1500 (the value
  that notation denotes, exactly); `3\\frac{1}{2}` is 3.5.
  Anything else is "no answer" (None), which is counted apart from a wrong answer.
Mode "strict": `#### <number>` exactly as the prompt asks: the line of the last `####` (bold around it
allowed) holds only the marker and one plain number (sign, digits, thousands commas, decimals).

Reference modes, kept to compare scorers (bench/compare_scorers.py), never used to train on:
  "tpt_original": the original TPT evmath.py: the FIRST `####\\s*(-?[\\d.,]+)`, compared as a string.
  "lmeval_strict" / "lmeval_flexible": lm-evaluation-harness's gsm8k.yaml (`#### (\\-?[0-9\\.\\,]+)`, first
  match; the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`), compared after its exact_match cleaning (case
  folded; commas, `$`, everything up to `#### ` and a trailing `.` removed).
  "lmeval_cot_strict": gsm8k-cot.yaml's strict-match, the first `The answer is (\\-?[0-9\\.\\,]+).` (its `.` is
  any character, as in the yaml); its flexible-extract is lmeval_flexible.
  These are the filters gen_eval.py reports for the harness's tasks (LMEVAL_FILTERS, lm-eval 0.4.13: a regex
  filter then take_first; no match is "[invalid]", here None), checked against the harness itself by
  bench/compare_lmeval.py.

Our modes return numbers in one canonical spelling ('500', '-0.25', '160/3'): equal values give equal
strings (`500.00` == `500`, `2,125` == `2125`, `9/8` == `1.125`), so comparing and voting are exact.
Nothing the model wrote is ever evaluated as code, and every regular expression here runs in linear time,
so any text scores in milliseconds.
"""
import functools
import re
from fractions import Fraction

MODES = ("answer", "strict")
REFERENCE_MODES = ("tpt_original", "lmeval_strict", "lmeval_flexible", "lmeval_cot_strict")
# The harness's two filters for each Eval task, by the harness's filter names; the tpt prompt asks for `#### N`,
# so its numbers are quoted with gsm8k's filters.
LMEVAL_FILTERS = {
    "tpt": {"strict-match": "lmeval_strict", "flexible-extract": "lmeval_flexible"},
    "gsm8k": {"strict-match": "lmeval_strict", "flexible-extract": "lmeval_flexible"},
    "gsm8k_cot": {"strict-match": "lmeval_cot_strict", "flexible-extract": "lmeval_flexible"},
}

# Digits with thousands separators in a real grouping: 1,234,567 or the Indian 12,34,567 (gemma writes both).
# "2,5" (a decimal comma) and "2,4,6" (a list) are not one number; a comma followed by a space is punctuation.
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d{1,2}(?:,\d{2})+,\d{3}(?!\d)|\d+)"
_UNSIGNED = r"(?:" + _DIGITS + r"(?:\.\d+)?|\.\d+)"
_NUM = r"[-−]?" + _UNSIGNED + r"(?:\s*/\s*\d+(?:\.\d+)?)?"
NUMBER_RE = re.compile(r"(?<![\w.])" + _NUM)
_PLAIN = r"-?" + _DIGITS + r"(?:\.\d+)?"
_STRICT_RE = re.compile(r"[ \t]*####[ \t]*(" + _PLAIN + r")[ \t]*$")
_PLAIN_AFTER_MARKER_RE = re.compile(r"[ \t]*(" + _PLAIN + r")[ \t]*$")  # the fast path
_PLAIN_ANSWER_IS_RE = re.compile(r"[ \t]*(?:the\s+)?(?:final\s+)?answer\s+is:?[ \t]*\$?(" + _PLAIN + r")[ \t]*\.?[ \t]*",
                                 re.IGNORECASE)
_PLAIN_BARE_RE = re.compile(r"[ \t*]*\$?(" + _PLAIN + r")[ \t*]*\.?[ \t]*")
_SIMPLE_NUMBER_RE = re.compile(r"\s*(" + _PLAIN + r")\s*\.?\s*$")

# One stated quantity: symbols before it, a number (a fraction only when written tight, `160/3`: `7000 / 300`
# is a division), then nothing but unit words, %, degrees, a superscript, `/unit` and punctuation.
_LEAD_NUMBER_RE = re.compile(r"(?:[\s(\[~≈]|[-−–—](?=\s))*([-−]?" + _UNSIGNED + r"(?:/\d+(?:\.\d+)?)?)")
_UNIT_TAIL_RE = re.compile(r"(?:[^\W\d_]|[\s%°'’.,;:!?()\[\]/]|(?<=[^\W\d_])-(?=[^\W\d_])|\^\s*[23])*")
_HOUR_RE = re.compile(r"(?<![\d:])(\d{1,2}):00(?![\d:])")  # 2:00 pm is the hour GSM8K golds give
_TIME_RE = re.compile(r"\d:\d")
_DIGIT_RE = re.compile(r"\d")
_SCIENTIFIC_RE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)(?:[eE]|\s*(?:[x×*·]|\\times|\\cdot)\s*10\s*\^\s*\{?\s*)([-+−]?\d{1,2})\}?(?![\w.])")
_NUMBER_LED_RE = re.compile(r"[\s\[(~≈]*(?:[-−–—]\s*)?\.?\d")
_NUMBERED_HEADING_RE = re.compile(r"\d+[.)]\s+[^\W\d_]")  # "#### 1. Compute the total"
_WORDS_LABEL_RE = re.compile(r"[^\W\d_][^:\n]{0,40}:(?!\d)")  # "Note:", "Step 2:", "Final Price:", not 2:00
_STEP_HEADING_RE = re.compile(r"(?:step|part|case|stage|phase|method|option)\s*\d", re.IGNORECASE)

_LATEX_SPACE_RE = re.compile(r"\\\(|\\\)|\\\[|\\\]|\\,|\\!|\\;|\\quad|\\ ")
_LATEX_OPERATOR_RE = re.compile(r"\\(?:times|cdot)(?![A-Za-z])")
# A thin space between digit groups is a thousands separator: 1\,234 and 1 234 (U+2009, U+202F, U+00A0).
_GROUP_SPACE_RE = re.compile(r"(?<=\d)(?:\\,|\\ |\\!|\\;|[\u2009\u202f\u00a0])(?=\d{3}(?!\d))")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_RE = re.compile(r"[{}]")
_MAX_BOXED = 500  # characters: a longer box, or a never-closed one far from the end, holds no answer
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_MIXED_FRAC_RE = re.compile(r"(?<![\d.])(\d+)\s*\\[dt]?frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}")
_LABEL_RE = re.compile(r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|=|:)?\s*:?\s*", re.IGNORECASE)
# "The answer is N", "Final answer: N", or a line that starts with "Answer:" or "A:" (after markdown or a
# list number; OpenAI's GSM8K samples end "A: 18", while "A = S + 5" is algebra); "Analyze the Answer:" is
# a heading, and "before the final answer, let's check 3 cases" is prose: a label ends in is, :, = or markup.
_ANSWER_PHRASE_RE = re.compile(
    r"(?:final\s+answer\s*(?:is\b|:|=|(?=[*_\s]*$)|(?=\*))|answer\s+is\b|"
    r"^[\s*#_>-]*(?:\d+\.\s*)?[\s*_]*(?:answer\s*[:=]|a\s*:))[ \t:*_=]*",
    re.IGNORECASE | re.MULTILINE)
# Closing pleasantries after the answer are not part of the solution: these openings, or a short
# exclamation with no number in it ("Good luck!", "Happy solving!").
_SIGN_OFF_RE = re.compile(
    r"[\W_]*(?:i\s+)?(?:let me know|hope\b|please\b|feel free|if you\b|do you\b|good luck|best of luck|"
    r"happy\b|glad\b|enjoy|cheers|thanks?\b|thank you|have (?:a|fun)\b|you'?re welcome|keep (?:up|practi)|"
    r"any (?:other|more|further) questions)", re.IGNORECASE)
_A_LABEL_RE = re.compile(r"[\s*#_>-]*(?:\d+\.\s*)?[\s*_]*a\s*:", re.IGNORECASE)
_BOLD_NUMBER_RE = re.compile(r"\*\*[^*\n]*?\d[^*\n]*?\*\*")
# A last line of digits and operators only, ending "= N": the result is stated, no words around it.
_EQUATION_LINE_RE = re.compile(r"(?=[^=]*\d)[-−+*/×÷^().,\d\s]+=\s*(-?" + _UNSIGNED + r")\s*\.?\s*$")
_BARE_LINE_RE = re.compile(r"[-−]?\s*" + _UNSIGNED + r"(?:\s*/\s*\d+)?\s*%?\s*[A-Za-z]*(?:\s*(?:\^\s*[23]|[²³]))?"
                           r"\s*\.?$")

_TPT_ORIGINAL_RE = re.compile(r"####\s*(-?[\d.,]+)")
_LMEVAL_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
_LMEVAL_FLEX_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_LMEVAL_COT_STRICT_RE = re.compile(r"The answer is (\-?[0-9\.\,]+).")
_LMEVAL_IGNORE = [re.compile(p) for p in (r",", r"\$", r"(?s).*#### ", r"\.$")]
# Each reference mode's regular expression, as its task file writes it (pass_at_k_results.json names them).
REFERENCE_REGEXES = {"tpt_original": _TPT_ORIGINAL_RE.pattern, "lmeval_strict": _LMEVAL_STRICT_RE.pattern,
                     "lmeval_flexible": _LMEVAL_FLEX_RE.pattern, "lmeval_cot_strict": _LMEVAL_COT_STRICT_RE.pattern}


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
    if len(s) > 4000:  # beyond int()'s default digit limit; no answer is written this way
        return None
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


def _mixed_number(m):
    if sum(map(len, m.groups())) > 100:  # no answer is written so; int() refuses thousands of digits
        return m.group(0)
    whole, num, den = (int(g) for g in m.groups())
    return canonical(whole + Fraction(num, den)) if den else m.group(0)


def _clean_line(line):
    """A line with markdown, LaTeX wrappers and currency signs taken off, so only words and numbers remain."""
    if "\\" in line or not line.isascii() and ("\u2009" in line or "\u202f" in line or "\u00a0" in line):
        line = _GROUP_SPACE_RE.sub(",", line.replace("{,}", ","))
        if "frac" in line:
            line = _FRAC_RE.sub(r"\1/\2", _MIXED_FRAC_RE.sub(_mixed_number, line))
        line = _TEXT_RE.sub(r" \1 ", line)
        line = _BOXED_RE.sub(" ", line).replace("\\$", "$").replace("\\%", "%")
        line = _LATEX_OPERATOR_RE.sub(" × ", _LATEX_SPACE_RE.sub(" ", line))
    if "{" in line or "}" in line:
        line = line.replace("{,}", ",").replace("{", " ").replace("}", " ")
    line = line.replace("**", " ").replace("__", " ").replace("`", " ")
    if "$" in line:
        line = line.replace("-$", "-").replace("−$", "-").replace("$", " ")
    return line.strip(" \t*_#:")


def _scientific(m):
    if len(m.group(1)) > 100:  # no answer is written so; int() refuses thousands of digits
        return m.group(0)
    exponent = int(m.group(2).replace("−", "-"))
    return canonical(Fraction(m.group(1)) * Fraction(10) ** exponent)


def _quantity(segment):
    """The number of a segment that states one quantity (a number with only units and punctuation around
    it), else None."""
    m = _LEAD_NUMBER_RE.match(segment)
    if not m:
        return None
    value = _number_token(m.group(1))
    tail = segment[m.end():]
    if _UNIT_TAIL_RE.fullmatch(tail):
        return value
    # The same number said twice is still one quantity (gemma writes `#### 3 3` and `#### 3**: 3 trucks`).
    repeats = NUMBER_RE.findall(tail)
    if repeats and all(_number_token(t) == value for t in repeats) and _UNIT_TAIL_RE.fullmatch(
            NUMBER_RE.sub(" ", tail)):
        return value
    return None


def _stated_value(line):
    """(holds a number, the quantity it asserts or None) for one stated line, already cleaned.

    A line that holds numbers but asserts no single quantity (a hedge, a range, a list, a time) is
    (True, None): no answer, and the caller must not look elsewhere for a luckier one.
    """
    simple = _SIMPLE_NUMBER_RE.match(line)
    if simple:  # the common case, "42." after a label
        return True, _number_token(simple.group(1))
    line = line.lstrip(" \t[(")
    m = _LABEL_RE.match(line)
    if m:
        line = line[m.end():]
    if ":" in line and _TIME_RE.search(line):
        line = _HOUR_RE.sub(r"\1", line)
        if _TIME_RE.search(line):
            return True, None  # 3:45 pm, 1:30, a ratio 2:1
    if "e" in line or "10" in line:
        line = _SCIENTIFIC_RE.sub(_scientific, line)
    first = NUMBER_RE.search(line)
    if first is None:
        return False, None
    if "=" in line:
        # An equation asserts its first side when that is one quantity (`12 = 3 x 4`, `150 minutes = 2.5
        # hours`), else the result it derives (`3 x 4 = 12`, `x = 7`).
        parts = line.split("=")
        value = _quantity(parts[0])
        return True, value if value is not None else _quantity(parts[-1])
    if _NUMBER_LED_RE.match(line):
        return True, _quantity(line)
    # A sentence ("Tommy caught 14 fish."): it asserts its number when it holds exactly one.
    values = {_number_token(t) for t in NUMBER_RE.findall(line)}
    return True, values.pop() if len(values) == 1 else None


def _bare_number(line):
    """The number of a cleaned line that is only a number (with %, a unit word, a full stop), or None."""
    if line[0] not in "-−.0123456789":  # cheap test before the regex
        return None
    if "e" in line or "10" in line:
        line = _SCIENTIFIC_RE.sub(_scientific, line)
    return number_text(line) if _BARE_LINE_RE.match(line) else None


def _sign_off_opening(line):
    """Whether a line opens with a closing pleasantry ("Let me know ...", "Hope this helps!")."""
    # Cheap test before the regex: a number line, the commonest line it sees, opens with a digit.
    return not line.lstrip(" \t*_#>-")[:1].isdigit() and _SIGN_OFF_RE.match(line) is not None


def _is_sign_off(line):
    """Whether a cleaned line is a closing pleasantry rather than part of the solution."""
    if _sign_off_opening(line):
        return True
    # A short exclamation with no number ("Good luck!", "Happy solving! :)"), or no letter or digit at all
    # (an emoji, a rule).
    if "!" in line[-4:] and line.count(" ") < 6:
        return not _DIGIT_RE.search(line)
    return not line[0].isalnum() and not any(c.isalnum() for c in line)


def _next_content_line(lines, start):
    """The first of lines[start:] that has text once cleaned, as (cleaned, raw), or (None, None)."""
    for i in range(start, len(lines)):  # by index: a slice would copy the rest of the text each time
        line = _clean_line(lines[i])
        if line:
            return line, lines[i]
    return None, None


def _last_content_line(lines):
    """The last cleaned line with text, closing pleasantries skipped, or None."""
    for raw in reversed(lines):
        if raw and not raw.isspace():
            line = _clean_line(raw)
            if line and not _is_sign_off(line):
                return line
    return None


def _last_boxed(text):
    """The contents of the last \\boxed{...} that holds a number, or None. Braces are matched in one pass
    over the text, so thousands of unclosed boxes cost no more than reading them."""
    if "box" not in text:
        return None
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    if not starts:
        return None
    closing, open_braces = {}, []
    for m in _BRACE_RE.finditer(text, starts[0] - 1):
        if m.group() == "{":
            open_braces.append(m.start())
        elif open_braces:
            closing[open_braces.pop()] = m.start()
    for start in reversed(starts):
        end = closing.get(start - 1, len(text))  # a box never closed runs to the end (a cut-off output)
        if end - start > _MAX_BOXED:
            continue
        inner = text[start:end]
        if NUMBER_RE.search(inner.replace("$", "")):
            return inner
    return None


def _labelled_value(lines, has_answer_word):
    """(found, value) after the last answer phrase (see the policy above)."""
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        # Cheap tests before the regex: the word "answer", or an "A:" that opens the line.
        if not ((has_answer_word and "answer" in line.lower()) or (
                ("a:" in line or "A:" in line or "a :" in line or "A :" in line) and _A_LABEL_RE.match(line))):
            continue
        # The last phrases of a line only: a line of thousands of "the answer is" costs no more than a few.
        for m in list(_ANSWER_PHRASE_RE.finditer(lines[i]))[-3:][::-1]:
            rest = _clean_line(lines[i][m.end():])
            if rest:
                stated, value = _stated_value(rest)
                if stated:
                    return True, value
                continue
            line, raw = _next_content_line(lines, i + 1)
            if line is None:
                continue
            value = _bare_number(line)
            if value is None:
                bold = _BOLD_NUMBER_RE.search(raw)
                value = _stated_value(_clean_line(bold.group(0)))[1] if bold else None
            if value is not None:
                return True, value
    return False, None


def _marker_value(text):
    """(found, value) from the last `####` answer marker, skipping `####` headings of words."""
    end_of_search = len(text)
    while True:
        pos = text.rfind("####", 0, end_of_search)
        if pos < 0:
            return False, None
        line_start = text.rfind("\n", 0, pos) + 1
        end_of_search = line_start
        end = text.find("\n", pos)
        rest = text[pos + 4:] if end < 0 else text[pos + 4:end]
        plain = _PLAIN_AFTER_MARKER_RE.match(rest)
        if plain:
            return True, _number_token(plain.group(1))
        line = _clean_line(rest)
        if not line:  # "####" alone, then the answer alone on a following line
            if end >= 0:
                following, _ = _next_content_line(text[end + 1:].split("\n"), 0)
                value = following and _bare_number(following)
                if value:
                    return True, value
            return False, None
        label = _LABEL_RE.match(line)
        body = line[label.end():] if label else line
        if not body:
            return False, None
        if _NUMBERED_HEADING_RE.match(body):
            continue
        if _NUMBER_LED_RE.match(body):
            return _stated_value(body)
        # Words after the marker. "Note: ...", "Step 2: Final" open with a label of their own: a heading,
        # unless the label states a bare number ("Total: $12"). Words with no number ("Explanation", "No
        # answer") state no answer here: an earlier marker or the rules below may. Else a sentence that
        # states the answer ("Tommy caught 14 fish.").
        words_label = _WORDS_LABEL_RE.match(body)
        if words_label:
            tail = body[words_label.end():].strip()
            value = _bare_number(tail) if tail else None
            if value is not None:
                return True, value
            continue
        if _STEP_HEADING_RE.match(body):
            continue
        stated, value = _stated_value(body)
        if stated:
            return True, value


def _answer_text(text):
    found, value = _marker_value(text)
    return value if found else _unmarked_answer(text)


def _answer_word(text):
    """Whether the word "answer" appears (Answer, ANSWER): cheaper than lower-casing the whole text."""
    return "nswer" in text or "NSWER" in text


def _a_label(text):
    """Whether an "A:" or "a :" appears, the other label the answer rule reads: colons are rare, so look
    at each one rather than search the text for "a"."""
    i = text.find(":")
    while i >= 0:
        if text[i - 1:i] in ("a", "A") or text[i - 2:i] in ("a ", "A "):
            return True
        i = text.find(":", i + 1)
    return False


def _unmarked_answer(text):
    """Rules 2-4 of the policy: the answer of a solution with no `####` answer marker."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return _stated_value(_clean_line(boxed))[1]
    lines = text.split("\n")
    has_answer_word = _answer_word(text)
    if has_answer_word or _a_label(text):
        found, value = _labelled_value(lines, has_answer_word)
        if found:
            return value
    last = _last_content_line(lines)
    if not last:
        return None
    value = _bare_number(last)
    if value is None and "=" in last:
        m = _EQUATION_LINE_RE.match(last)
        value = _number_token(m.group(1)) if m else None
    return value


def _plain_ending(text):
    """(found, value) for the commonest endings without a marker or a box, read at C speed from the last
    line alone, exactly as _unmarked_answer reads them: "The answer is N.", a bare N, or a last line of words
    and numbers (no answer); one "Let me know ..." line after it is skipped. (False, None): read in full."""
    end = len(text.rstrip())
    start = text.rfind("\n", 0, end) + 1
    last = text[start:end]
    if _sign_off_opening(last):
        if "answer" in last.lower() or ":" in last:  # the label rule would read this line: no shortcut
            return False, None
        last = ""
        while start > 0 and not last.strip():  # the line before, blank lines skipped
            end = start - 1
            start = text.rfind("\n", 0, end) + 1
            last = text[start:end]
        if _sign_off_opening(last):
            return False, None
    m = _PLAIN_ANSWER_IS_RE.fullmatch(last)
    if m:  # the label rule reads the last line first
        return True, _number_token(m.group(1))
    if _answer_word(text) or _a_label(text):
        return False, None
    m = _PLAIN_BARE_RE.fullmatch(last)
    if m:
        return True, _number_token(m.group(1))
    if last[:1].isalpha() and last[:1].isascii() and _DIGIT_RE.search(last):
        return True, None  # words first, a number inside: not a sign-off, not a bare number, no equation line
    return False, None


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
    if "box" not in text:
        found, value = _plain_ending(text)
        if found:
            return value, None
    return _unmarked_answer(text), None


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
    if mode == "lmeval_cot_strict":
        m = _LMEVAL_COT_STRICT_RE.search(text)
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
    if mode.startswith("lmeval_"):
        return _lmeval_clean(extracted) == _lmeval_clean(gold)
    gold_text = number_text(gold)
    return gold_text is not None and number_text(extracted) == gold_text
