"""pass@k against brute-force enumeration, maj@k on hand-made votes, the 95% interval by hand.
Runtime budget: < 2 s.
"""
import itertools
import math

import pytest

from tpt.metrics import maj_at_k, majority_vote, mean_pass_at_k, pass1_ci95, pass_at_k


def brute_force_pass_at_k(n, c, k):
    """Share of all k-subsets of n samples (c of them correct) that hold at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_pass_at_k_equals_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_large_n_is_exact():
    # math.comb keeps big n exact where a float product would drift; pass@1 is c/n exactly.
    assert pass_at_k(200, 37, 1) == pytest.approx(37 / 200, abs=1e-15)
    assert pass_at_k(200, 0, 100) == 0.0
    assert pass_at_k(200, 101, 100) == 1.0  # fewer than k wrong samples: every draw holds a correct one


def test_mean_pass_at_k_averages_questions():
    counts = [0, 3, 10]
    want = (brute_force_pass_at_k(10, 0, 2) + brute_force_pass_at_k(10, 3, 2) + 1.0) / 3
    assert mean_pass_at_k(counts, 10, 2) == pytest.approx(want)


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


VOTE_CASES = [
    # (answers in sample order, winner)
    (["5", "5", "7"], "5"),  # a plain majority
    (["7", "5", "5"], "5"),  # the majority wins wherever it sits
    (["5", "7"], "5"),  # a tie goes to the answer seen first
    (["7", "5"], "7"),  # ... in either order
    ([None, None, "3"], "3"),  # no-answer samples do not vote
    ([None, None], None),  # nothing voted
    (["1", "2", "2", "1", "3"], "1"),  # a two-way tie among the top: the first seen
]


@pytest.mark.parametrize("answers,winner", VOTE_CASES)
def test_majority_vote(answers, winner):
    assert majority_vote(answers) == winner


def test_maj_at_k_uses_the_first_k_samples():
    answers = [
        ["1", "2", "2", "2"],  # q0: gold 2; maj@1 votes '1' (wrong), maj@4 votes '2'
        ["9", "9", "8", "8"],  # q1: gold 8; maj@4 ties 9/8, the first seen (9) wins: wrong
        [None, "4", None, None],  # q2: gold 4; maj@1 has no vote (wrong), maj@2 votes '4'
    ]
    correct = [[False, True, True, True], [False, False, True, True], [False, True, False, False]]
    assert maj_at_k(answers, correct, 1) == 0.0
    assert maj_at_k(answers, correct, 2) == pytest.approx(1 / 3)  # q0 ties 1/2 -> '1'; q2 -> '4'
    assert maj_at_k(answers, correct, 4) == pytest.approx(2 / 3)


def test_pass1_ci95_by_hand():
    counts, n = [0, 5, 10, 10], 10  # per-question rates 0, .5, 1, 1
    rates = [0.0, 0.5, 1.0, 1.0]
    mean = sum(rates) / 4
    sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / 3)
    lo, hi = pass1_ci95(counts, n)
    assert lo == pytest.approx(max(0.0, mean - 1.96 * sd / 2))
    assert hi == pytest.approx(min(1.0, mean + 1.96 * sd / 2))
    assert pass1_ci95([3, 3, 3], 10) == pytest.approx((0.3, 0.3))  # no spread between questions


def test_pass1_ci95_is_about_two_points_on_500_questions():
    # The yardstick: a pass@1 near 0.5 on 500 questions with a spread of per-question rates.
    counts = [c % 11 for c in range(500)]
    lo, hi = pass1_ci95(counts, 10)
    assert 0.02 < (hi - lo) / 2 < 0.04
