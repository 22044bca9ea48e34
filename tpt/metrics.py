"""pass@k, maj@k and a 95% interval on pass@1, from per-question counts and answers.

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of which c are correct,
pass@k = 1 - C(n-c, k) / C(n, k), the chance that k samples drawn without replacement hold a correct one,
averaged over questions. Computed with exact integers, so it holds for any n.

maj@k votes on the extracted answers of the FIRST k samples (e0 .. e{k-1}); samples with no answer do not
vote. A tie goes to the tied answer that appeared first (lowest sample index), so the result never depends
on dictionary order. A question with no answer at all counts as wrong.

The 95% interval on pass@1 is the normal approximation over questions: each question contributes c/n,
the interval is mean +- 1.96 * sd / sqrt(Q) (sd with Q-1 in the denominator). It measures how much the
figure would move on another draw of questions of the same kind (about 2 points on 500 questions), which is
the uncertainty that matters when comparing two models on the same test set only loosely; it does not
include the sampling noise of the n solutions per question, which is smaller once n >= 4.
"""
import functools
import math
from collections import Counter


@functools.lru_cache(maxsize=None)
def pass_at_k(n, c, k):
    """Unbiased pass@k for one question: n samples, c correct, k drawn."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    total = math.comb(n, k)
    return (total - math.comb(n - c, k)) / total  # int / int: one correctly rounded division


def mean_pass_at_k(correct_counts, n, k):
    """pass@k averaged over questions; correct_counts holds c for each question."""
    if not correct_counts:
        return 0.0
    how_many = Counter(correct_counts)  # counted in C: summaries ask for every k on 7,473 questions
    return sum(m * pass_at_k(n, c, k) for c, m in sorted(how_many.items())) / len(correct_counts)


def majority_vote(answers):
    """The most frequent non-None answer; ties go to the one seen first; None if nothing voted."""
    counts = dict.fromkeys(answers, 0)  # dicts keep first-seen order
    for a in answers:
        counts[a] += 1
    counts.pop(None, None)
    if not counts:
        return None
    best = max(counts.values())
    for a, c in counts.items():
        if c == best:
            return a


def maj_at_k(answers_per_question, correct_per_question, k):
    """Share of questions whose vote over the first k answers is correct.

    answers_per_question: for each question, its extracted answers in sample order (None = no answer).
    correct_per_question: for each question, whether each of those samples is correct (same order).
    """
    if not answers_per_question:
        return 0.0
    if k == 1:  # a vote of one: the first sample's verdict (no answer is wrong)
        return sum(correct[0] for correct in correct_per_question) / len(answers_per_question)
    hits = 0
    for answers, correct in zip(answers_per_question, correct_per_question):
        winner = majority_vote(answers[:k])
        hits += winner is not None and correct[answers.index(winner)]
    return hits / len(answers_per_question)


def pass1_ci95(correct_counts, n):
    """(lo, hi) of the normal-approximation 95% interval on pass@1 over questions."""
    q = len(correct_counts)
    if q == 0:
        return (0.0, 0.0)
    rates = [c / n for c in correct_counts]
    mean = sum(rates) / q
    if q == 1:
        return (mean, mean)
    var = sum((r - mean) ** 2 for r in rates) / (q - 1)
    half = 1.96 * math.sqrt(var / q)
    return (max(0.0, mean - half), min(1.0, mean + half))
