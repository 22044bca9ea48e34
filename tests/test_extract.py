"""Answer extraction, table-driven. The endings are real gemma-2-2b-it outputs from
tpt_reference/gemma2b_test500 (shortened to the part that matters), the reference solution formats, and the
styles of other model families (markdown headings, LaTeX, sign-offs) with the lucky rights they invite.
Runtime budget: < 3 s.
"""
import time
from fractions import Fraction

import pytest

from tests.conftest import TPT_REF
from tpt.extract import MODES, REFERENCE_MODES, canonical, extract_answer, extract_pair, is_correct, parse_number
from tpt.io import read_json

ANSWER_CASES = [
    # (solution ending, expected "answer" mode extraction)
    ("* $4000 - $3500 = $500.\n\n#### 500", "500"),  # the prompt's own format
    ("**2. Calculate:** 7 + 10 + 14 = 31\n\n**#### 31**", "31"),  # the marker line in bold
    ("so the change is $500.\n\n**#### Answer: $500**", "500"),  # bold, a label and a dollar sign
    ("x = $26.00\n\n#### 26.00", "26"),  # trailing zeros: 26.00 is 26
    ("8 * 35 = 280 children.\n\n####  280**", "280"),  # bold closed after the number only
    ("= $40\n\n****\n\n#### $40", "40"),  # empty bold line before the marker
    ("= $45000 \n\n#### $45000 \n\n\n\nLet me know if you'd like to explore any other math problems!", "45000"),
    ("**Answer:**\n#### 360", "360"),  # label line before the marker
    ("#### **: 26", "26"),  # gemma's "#### **: N" variant
    ("#### **Answer:** 160", "160"),  # label in bold after the marker
    ("**Answer:** #### 6", "6"),  # label before the marker on the same line
    ("#### **[101]**", "101"),  # the prompt's [Answer] brackets kept
    ("#### **[Answer: 20]**", "20"),  # brackets and a label
    ("**#### 400 miles** ", "400"),  # a unit after the number
    ("#### 8 miles per hour", "8"),  # a unit of several words
    ("**#### 20%**", "20"),  # a percent sign
    ("#### 36 - 27 = 9 eggs ", "9"),  # an equation chain: the result after the last '='
    ("#### $4.00 + $8.00 = $12.00", "12"),  # an equation chain in dollars
    ("#### 2M + 20 = 2(10) + 20 = 20 + 20 = 40 ", "40"),  # a long chain with a variable
    ("#### $x = $7", "7"),  # a variable assignment
    ("#### 2125 ", "2125"),  # gold is written '2,125': compared by value, see below
    ("#### $1,450,000", "1450000"),  # thousands separators
    ("#### 1,30,000", "130000"),  # Indian grouping of thousands separators
    ("#### -10", "-10"),  # a negative answer
    ("    #### -3°C", "-3"),  # a negative temperature with a degree sign
    ("**#### - $11.00**", "11"),  # a dash before a spaced dollar amount is punctuation, not a sign
    ("#### -$21.00", "-21"),  # a minus sign attached to a dollar amount is a sign
    ("#### 9/8", "1.125"),  # a fraction, written as its exact decimal
    ("  #### 160/3 feet. ", "160/3"),  # a fraction with a unit; a repeating decimal stays a fraction
    ("#### $294/week", "294"),  # a rate: the slash is followed by a word, not a number
    ("#### $7000 / 300 chickens = $23.33 / chicken ", "23.33"),  # a rate in an equation chain
    ("**#### 4:00 pm** ", "4"),  # a clock time on the hour: GSM8K golds give the hour
    ("#### 6th", "6"),  # an ordinal
    ("#### Tommy caught 14 fish.", "14"),  # a sentence after the marker
    ("#### Shannon will need to make **5** dozens of cookies.", "5"),  # a sentence with a bold number
    ("**Final Answer:** \\[#### \\$88000\\] ", "88000"),  # LaTeX brackets and an escaped dollar
    ("**#### $$1000$$**", "1000"),  # LaTeX display dollars
    ("#### `$17`", "17"),  # inline code
    ("#### 36.", "36"),  # a full stop after the number
    ("* `s = 9`\n\n####\n9", "9"),  # the marker alone, the answer alone on the next line
    ("** #### ** \n 54", "54"),  # the marker alone in bold, the answer on the next line
    ("first try #### 12\nno, recount.\n#### 14", "14"),  # the LAST marker counts
    ("**#### No Answer** \n\n**Explanation:** The problem is flawed.", None),  # the model gave no answer
    ("Let me know if you want to see the algebra!", None),  # no answer at all
    ("**8. Final Answer:**\n\n\n####", None),  # an empty marker at the very end
    ("#### \n\n\n**Important Notes**\n* 2 ice cubes melt", None),  # a note after an empty marker is no answer
    ("**4. Analyze the Answer:**\n\nThe answer implies that Lynn ran 23 miles. This is impossible.", None),
    # ^ a heading with the word Answer, then prose: not a stated answer
    ("So the answer is 42.", "42"),  # "the answer is" without a marker
    ("The final answer is $\\boxed{1,250}$.", "1250"),  # \boxed{} without a marker
    ("so x = \\boxed{\\frac{3}{4}}", "0.75"),  # \boxed{\frac{}{}}
    ("**4.  Answer:**\n\n 4", "4"),  # a label alone, the number alone on the next line
    ("**5.  Answer**\n\nEve gave away **15** pomelos.\n\n 15", "15"),  # a bare final number line
    ("= $251.\n\n $251", "251"),  # a bare final dollar line
    ("**Final Answer:**  Finley finished in **6th place**.", "6"),  # a label with a bold ordinal
    ("* 4 pens. \n\n\n 4 \n\n\n\nLet me know if you'd like any further clarification!", "4"),  # sign-off ignored
    ("**7. Final Answer:**\n\n* We can now continue to solve for S using A + 5W = 352.", None),
    # ^ a label followed by a sentence that only mentions numbers: no answer
    ("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18"),  # GSM8K reference with calculator notes
    ("So he makes 10 jars * $6 = $<<10*6=60>>60.\nA: 60", "60"),  # OpenAI's example solutions end "A: N"
    ("1 + 1 = 2", "2"),  # SmolLM2's whole reply: a last line of pure arithmetic states its result
    ("Step 1: add.\n(2 + 3) × 4 = 20.", "20"),  # an arithmetic last line with parentheses and a full stop
    ("x + 1 = 5", None),  # algebra is not a stated answer (x = 4 here)
    ("The sum is 2 + 2 = 4 apples and more", None),  # words around the equation: not a bare last line
    ("**#### 3 3**", "3"),  # gemma says the number twice: still one quantity
    ("**#### 3**: 3 trucks", "3"),  # the number, then the same number with its unit
    ("   #### 56  (Dromedaries)", "56"),  # a unit word in parentheses
    ("#### **: 36 candles, 20 flashlights", None),  # two quantities: no answer (was 36)
    ("#### 5700 seconds**  or **90 minutes**", None),  # a hedge between two quantities (was 5700)
    ("#### 3 hours and 45 minutes**", None),  # a compound duration is not one number (was 3)
]


@pytest.mark.parametrize("text,expected", ANSWER_CASES)
def test_answer_mode(text, expected):
    assert extract_answer(text, "answer") == expected


FAMILY_CASES = [
    # (solution ending, gold, expected "answer" extraction): the styles of Llama, Qwen, Mistral and SmolLM2.
    # Each family reads the asserted answer, and refuses the lucky right (gold = the number a careless
    # reader would take, expected None): a wrong answer scored correct is the worst error a scorer makes.
    # -- `####` is an answer marker, not a markdown heading of words
    ("#### Step 2: Final\nThe answer is $\\boxed{12}$", "12", "12"),  # a heading, then the boxed answer
    ("#### Step 2: Final\nThe answer is $\\boxed{12}$", "2", "12"),  # ... its step number is not read
    ("#### 12\n\n#### Explanation\nWe multiplied 3 by 4.", "12", "12"),  # a heading after the marker
    ("#### 12\n\n#### Explanation", "12", "12"),  # ... even as the very last line
    ("#### 12\n#### Note: 5 people asked", "12", "12"),  # a note heading after the marker
    ("#### 12\n#### Note: 5 people asked", "5", "12"),  # ... whose number is not the answer
    ("#### 1. Compute the total\n3 x 4 = 12\nThe answer is 12.", "1", "12"),  # a numbered heading
    ("#### Total: $12", "12", "12"),  # a label of words stating a bare number is an answer
    ("#### David saves $12\n\n**Explanation:** see above", "12", "12"),  # a sentence, then an explanation
    # -- LaTeX and typographic thousands separators
    ("The answer is $\\boxed{18{,}000}$", "18000", "18000"),  # LaTeX {,} separator
    ("The answer is $\\boxed{18{,}000}$", "18", "18000"),  # ... not 18
    ("$\\boxed{1\\,234}$", "1234", "1234"),  # LaTeX thin space \,
    ("$\\boxed{1\\,234}$", "1", "1234"),  # ... not 1
    ("#### 1\u2009234", "1234", "1234"),  # a Unicode thin space
    ("#### 1\u202f234\u202f567 dollars", "1234567", "1234567"),  # narrow no-break spaces
    ("#### 1\u00a0234", "1", "1234"),  # a no-break space joins digit groups, it does not end the number
    ("#### 1\u00a023", "1", None),  # two digits after the space are not a thousands group
    # -- sign-offs after the final number, generalised rather than listed
    ("6 * 2 = 12\n\n12\n\nHope this helps!", "12", "12"),  # "Hope this helps!"
    ("6 * 2 = 12 apples.\n\n12 apples\n\nGood luck!", "12", "12"),  # "Good luck!"
    ("Total: 12 + 0\n\n 12\n\nHappy to help", "12", "12"),  # "Happy to help", no punctuation
    ("so we get\n\n**12**\n\nHappy solving! 😊", "12", "12"),  # an exclamation and an emoji
    ("so we get\n\n12\n\nThanks for the fun problem!\n\n---", "12", "12"),  # thanks and a rule line
    ("so we get\n\n12\n\nBut wait, 12 counts the boxes, not the apples.", "12", None),  # not a sign-off
    # -- the marker line asserts one quantity, then explains it
    ("#### 12 = 3 x 4", "12", "12"),  # the quantity, then its derivation
    ("#### 12 = 3 x 4", "3", "12"),  # ... not the first factor
    ("#### $60 = 5 x $12", "60", "60"),  # in dollars
    ("#### $60 = 5 x $12", "5", "60"),  # ... not the count
    ("#### 3 x 4 = 12", "12", "12"),  # a derivation, then its result
    ("#### 180 minutes (= 3 hours)", "180", "180"),  # a conversion in parentheses
    ("#### 180 minutes (= 3 hours)", "3", "180"),  # ... not the converted figure
    ("#### 150 minutes = 2.5 hours", "150", "150"),  # a conversion after '='
    ("#### 150 minutes = 2.5 hours", "2.5", "150"),  # ... not its right side
    ("#### $7000 / 300 chickens = $23.33 / chicken", "23.33", "23.33"),  # a spaced division is no quantity
    ("#### x = 3 x 4", "3", None),  # a variable equal to an expression asserts no number
    # -- mixed numbers and superscript units
    ("$\\boxed{3\\frac{1}{2}}$", "3.5", "3.5"),  # a mixed number is 3 + 1/2
    ("$\\boxed{3\\frac{1}{2}}$", "31/2", "3.5"),  # ... not 31/2 with the digits glued
    ("So the area is 3 * 4.\n\n12 cm^2", "12", "12"),  # a superscript unit on the bare last line
    ("So the area is 3 * 4.\n\n12 cm²", "12", "12"),  # a Unicode superscript
    ("So the area is 3 * 4.\n\n$12 \\text{ cm}^{2}$", "12", "12"),  # a LaTeX superscript
    # -- lucky rights refused: ambiguous assertions are no answer
    ("#### 3:45 PM", "3", None),  # a clock time off the hour is not its hour
    ("#### 2:00 PM", "2", "2"),  # ... while a time on the hour is (GSM8K writes the answer 2)
    ("#### 10-12", "10", None),  # a range
    ("#### 10 to 12 cookies", "10", None),  # a range in words
    ("#### 12 or 13", "12", None),  # a hedge
    ("The answer is 12 or 13.", "12", None),  # a hedge after a label
    ("$\\boxed{12 \\text{ or } 13}$", "12", None),  # a hedge in a box
    ("#### 2,5", "25", None),  # a decimal comma is not a thousands separator
    ("#### 2,5", "2", None),  # ... nor a full stop
    ("#### 2,4,6", "246", None),  # a list
    ("#### 2, 4, 6", "2", None),  # a spaced list
    ("2,5", "25", None),  # a decimal comma on the bare last line
    ("#### 1.5e3", "1500", "1500"),  # scientific notation is the number it denotes
    ("#### 1.5e3", "1.5", "1500"),  # ... never its mantissa
    ("#### 1.5 \\times 10^{3}", "1.5", "1500"),  # the LaTeX spelling too
    ("Before we give the final answer, let's check 3 cases", "3", None),  # prose, not a label
    ("The final answer is 4 (we checked 3 cases).", "4", None),  # an aside with another number: not one quantity
    ("A: 10+John's age", "10", None),  # an expression is not a stated number
]


@pytest.mark.parametrize("text,gold,expected", FAMILY_CASES)
def test_model_families(text, gold, expected):
    answer = extract_answer(text, "answer")
    assert answer == expected
    assert is_correct(answer, gold) is (expected is not None and is_correct(expected, gold))


STRICT_CASES = [
    # (solution ending, expected "strict" mode extraction)
    ("so 500.\n#### 500", "500"),  # exactly the prompt's format
    ("**#### 31**", "31"),  # bold around the whole line is cosmetic
    ("#### 2,125", "2125"),  # thousands separator
    ("#### -3.5 ", "-3.5"),  # sign, decimals, trailing space
    ("**#### $500**", None),  # a dollar sign is not the format asked for
    ("#### 400 miles", None),  # nor a unit
    ("#### **: 26", None),  # nor a label
    ("**Answer:** #### 6", None),  # the marker must open its line
    ("#### 36 - 27 = 9", None),  # nor an equation
    ("####\n9", None),  # the number must share the marker's line
    ("The answer is 42.", None),  # no marker at all
    ("#### 12\nlater: #### 13 apples", None),  # the LAST marker line decides
    ("#### 2,5", None),  # a decimal comma is not a thousands separator (was 25)
    ("#### 1,30,000", "130000"),  # the Indian grouping is
]


@pytest.mark.parametrize("text,expected", STRICT_CASES)
def test_strict_mode(text, expected):
    assert extract_answer(text, "strict") == expected


REFERENCE_CASES = [
    # (text, gold, mode, extracted, correct): the rules of the original scorer and of lm-eval, reproduced
    ("#### 500", "500", "tpt_original", "500", True),  # the plain case
    ("**#### $500**", "500", "tpt_original", None, False),  # the original misses a dollar sign
    ("#### 26.00", "26", "tpt_original", "26.00", False),  # and compares strings: 26.00 != 26
    ("#### 2125", "2,125", "tpt_original", "2125", False),  # even against its own gold '2,125'
    ("#### 12\n#### 14", "14", "tpt_original", "12", False),  # and takes the FIRST marker
    ("#### 2,125", "2,125", "lmeval_strict", "2,125", True),  # lm-eval drops commas on both sides
    ("####  15", "15", "lmeval_strict", None, False),  # lm-eval wants exactly one space after ####
    ("#### $28.00", "28", "lmeval_strict", None, False),  # its number class has no $
    ("total $28.00", "28", "lmeval_flexible", "$28.00", False),  # the last number, $ removed, 28.00 != 28
    ("is 5 sessions\n\n**Explanation:** for the 15 flans.", "5", "lmeval_flexible", "15", False),  # last number
    ("so 1,600.", "1,600", "lmeval_flexible", "1,600.", True),  # trailing '.' and ',' removed
]


@pytest.mark.parametrize("text,gold,mode,extracted,correct", REFERENCE_CASES)
def test_reference_modes(text, gold, mode, extracted, correct):
    assert extract_answer(text, mode) == extracted
    assert is_correct(extract_answer(text, mode), gold, mode) is correct


COMPARE_CASES = [
    # (extracted, gold, correct): numeric comparison, never string comparison
    ("500", "500.00", True),  # trailing zeros
    ("2125", "2,125", True),  # a gold with a thousands separator
    ("0.5", "1/2", True),  # a decimal and a fraction
    ("-3", "-3", True),  # negative numbers
    ("3", "-3", False),  # a sign flip is wrong
    ("17.33", "17.333", False),  # a rounded answer is not the exact one
    (None, "5", False),  # no answer is never correct
    ("5", "five", False),  # a gold that is not a number matches nothing
]


@pytest.mark.parametrize("extracted,gold,correct", COMPARE_CASES)
def test_is_correct_compares_values(extracted, gold, correct):
    assert is_correct(extracted, gold) is correct


NUMBER_CASES = [
    # (written, exact value)
    ("2,125", Fraction(2125)),  # thousands separator
    ("$1,450,000.50", Fraction(145000050, 100)),  # dollars, separators and cents
    ("−7", Fraction(-7)),  # a unicode minus sign
    (".5", Fraction(1, 2)),  # no leading zero
    ("20/3", Fraction(20, 3)),  # a fraction
    ("1/0", None),  # a zero denominator is no number
    ("٣٠", Fraction(30)),  # Arabic-Indic digits are digits too
    ("007", Fraction(7)),  # leading zeros
    ("none", None),  # no digits at all
]


@pytest.mark.parametrize("written,value", NUMBER_CASES)
def test_parse_number(written, value):
    assert parse_number(written) == value


@pytest.mark.parametrize("value,text", [
    (Fraction(500), "500"),  # an integer
    (Fraction(-1, 4), "-0.25"),  # a terminating decimal
    (Fraction(1, 3), "1/3"),  # a repeating decimal stays a fraction, so votes compare exactly
])
def test_canonical(value, text):
    assert canonical(value) == text
    assert parse_number(text) == value


def test_model_text_is_never_evaluated():
    # Code in a solution is text: extraction neither runs it nor fails on it.
    text = "#### __import__('os').system('echo pwned') 7"
    assert extract_answer(text) == "7"
    assert all(extract_answer(text, m) is None or isinstance(extract_answer(text, m), str)
               for m in MODES + REFERENCE_MODES)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown extraction mode"):
        extract_answer("#### 1", "lenient")


SHORTCUT_EDGES = [
    # endings near the shortcut for unmarked solutions (one last line read at C speed), where it must give
    # exactly what the full rules give, or step aside
    "So 3 + 4 = 7.\nThe answer is 7.\n\nLet me know if you have questions about the answer 8.",  # "answer" in a sign-off
    "The answer is 5.\nWe check: 5 + 1 = 6\n 6\n\nHope this helps!",  # an earlier label outranks a bare number
    "Earlier, A: 4\n\n 6\n\nLet me know!",  # an "A:" label elsewhere
    "THE ANSWER IS 9\n\n 6",  # a label in capitals
    " 6\n\nGood luck!",  # a short exclamation after the bare number: the full rules skip it
    " 6\n\nLet me know.\nFeel free to ask.",  # two sign-offs
    "We need 3 more boxes than 2 days ago",  # words and numbers: no answer
    "Égal à 3 boîtes",  # a non-ASCII first letter: the full rules decide
    "$12",  # a bare dollar amount
    "-$12",  # a sign before the dollar
    "**12**\n\nThanks!",  # a bold bare number, then thanks
]


def test_extract_pair_agrees_with_each_mode(shared_data):
    # Scoring takes both modes in one call with a shortcut for plain `#### N` lines; on all 5,000 real gemma
    # outputs and the table above it must give exactly what the two modes give one at a time.
    texts = [r["solution"] for i in range(10) for r in read_json(TPT_REF / "gemma2b_test500" / f"e{i}.json")]
    texts += [text for text, _ in ANSWER_CASES] + [text for text, _ in STRICT_CASES]
    texts += [text for text, _, _ in FAMILY_CASES] + SHORTCUT_EDGES
    for text in texts:
        assert extract_pair(text) == (extract_answer(text, "answer"), extract_answer(text, "strict")), text


HOSTILE_TEXTS = [
    # (what it is, text): inputs that once took 12 to 123 s (quadratic scans); each must score at once
    ("5,000 unclosed boxes in 135 kB", "\\boxed{ step " * 5000 + "x" * 70000),
    ("a 20,000-digit line", "So:\n" + "1" * 20000),
    ("a 20,000-digit marker line", "#### " + "1" * 20000),
    ("20,000 digits in groups", "#### " + "1," * 10000),
    ("20,000 digits as a spaced division", "The answer is " + "1 / " * 5000),
    ("5,000 answer phrases on one line", "the answer is " * 5000),
    ("5,000 headings", "#### Note: more\n" * 5000),
    ("5,000 sign-offs", "12\n" + "Good luck!\n" * 5000),
    ("40,000 labels alone", "Answer:\n\n" * 40000),  # each looks ahead for its number: linear, not quadratic
    ("a 5,000-digit mantissa", "#### " + "1" * 5000 + "e3"),  # beyond int()'s digit limit: no answer, no error
    ("a 5,000-digit mixed number", "$\\boxed{" + "1" * 5000 + "\\frac{1}{2}}$"),
]


@pytest.mark.parametrize("name,text", HOSTILE_TEXTS)
def test_any_text_scores_in_bounded_time(name, text):
    # The bound is loose on purpose (a loaded machine must not flake it): these took 12-123 s when the
    # scans were quadratic and take milliseconds now.
    start = time.process_time()
    extract_pair(text)
    assert time.process_time() - start < 1.0, name


def test_gemma_figures_do_not_move(shared_data):
    # Hand-checked on the 5,000 gemma outputs (docs/scoring.md): 3,167 correct samples,
    # pass@1 0.6334 and pass@10 0.868. A new reading rule may turn a wrong answer into no answer, never
    # change which samples are correct.
    gold = {q["idt"]: q["solnum"] for q in read_json(TPT_REF / "test500.json")}
    counts = dict.fromkeys(gold, 0)
    for i in range(10):
        for r in read_json(TPT_REF / "gemma2b_test500" / f"e{i}.json"):
            counts[r["qnum"]] += is_correct(extract_answer(r["solution"]), gold[r["qnum"]])
    assert sum(counts.values()) == 3167
    assert sum(c > 0 for c in counts.values()) == 434
