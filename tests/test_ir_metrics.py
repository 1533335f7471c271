"""Retrieval metrics against hand-computed values, with scipy as an independent check of tau-b."""

from __future__ import annotations

import math

import pytest

from larpo.metrics import kendall_tau, kl_estimate, mrr, ndcg_at_k, recall_at, reciprocal_rank, win_rate

LOG2_3 = math.log2(3)


def test_recall_at_cutoffs():
    # The only relevant item (reward 1 >= 1) is at rank 3.
    assert recall_at([0.0, 0.0, 1.0], 2, threshold=1.0) == 0.0
    assert recall_at([0.0, 0.0, 1.0], 3, threshold=1.0) == 1.0
    assert recall_at([0.0, 0.0, 1.0], 10, threshold=1.0) == 1.0
    with pytest.raises(ValueError, match="n >= 1"):
        recall_at([1.0], 0, threshold=1.0)


def test_ndcg_linear_gains():
    # Policy order has rewards [1, 0, 2].
    # DCG@3 = 1/log2(2) + 0/log2(3) + 2/log2(4) = 1 + 0 + 1 = 2.
    # Ideal order [2, 1, 0]: IDCG@3 = 2/1 + 1/log2(3) + 0 = 2 + 0.6309 = 2.6309.
    assert ndcg_at_k([1.0, 0.0, 2.0], 3) == pytest.approx(2 / (2 + 1 / LOG2_3))
    # At k = 2: DCG@2 = 1, IDCG@2 = 2 + 1/log2(3).
    assert ndcg_at_k([1.0, 0.0, 2.0], 2) == pytest.approx(1 / (2 + 1 / LOG2_3))


def test_ndcg_exponential_gains():
    # Gains 2^r - 1 for rewards [1, 0, 2] are [1, 0, 3].
    # DCG@3 = 1 + 0 + 3/2 = 2.5, and IDCG@3 = 3 + 1/log2(3) = 3.6309.
    assert ndcg_at_k([1.0, 0.0, 2.0], 3, exponential=True) == pytest.approx(2.5 / (3 + 1 / LOG2_3))


def test_ndcg_edge_cases():
    assert ndcg_at_k([3.0, 2.0, 0.5], 3) == pytest.approx(1.0)
    assert math.isnan(ndcg_at_k([0.0, 0.0, 0.0], 3))
    with pytest.raises(ValueError, match="non-negative"):
        ndcg_at_k([1.0, -1.0], 2)
    with pytest.raises(ValueError, match="k >= 1"):
        ndcg_at_k([1.0], 0)


def test_mrr_hand_values():
    # First relevant ranks: 2, 1 and none, so MRR = (1/2 + 1 + 0) / 3 = 0.5.
    lists = [[0.0, 1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    assert reciprocal_rank(lists[0], threshold=1.0) == 0.5
    assert reciprocal_rank(lists[2], threshold=1.0) == 0.0
    assert mrr(lists, threshold=1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one list"):
        mrr([], threshold=1.0)


def test_kendall_tau_without_ties():
    # Of the 6 pairs only (2, 3) is ordered differently: C = 5, D = 1, tau = 4/6.
    assert kendall_tau([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(2 / 3)
    assert kendall_tau([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_kendall_tau_b_with_ties():
    # x = [1, 2, 3], y = [1, 1, 2]: pair (1, 2) is tied in y, pairs (1, 3) and (2, 3) are
    # concordant. C = 2, D = 0, n0 = 3, t_x = 0, t_y = 1: tau_b = 2 / sqrt(3 * 2).
    assert kendall_tau([1.0, 2.0, 3.0], [1.0, 1.0, 2.0]) == pytest.approx(2 / math.sqrt(6))
    # Every pair tied in y: undefined.
    assert math.isnan(kendall_tau([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match="same items"):
        kendall_tau([1.0, 2.0], [1.0])


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0]),
        ([0.3, -1.2, 0.3, 2.0, 2.0, 0.1], [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]),
        ([-4.5, -3.1, -9.0, -3.1], [0.0, 2.0, 2.0, 1.0]),
    ],
)
def test_kendall_tau_matches_scipy(x, y):
    stats = pytest.importorskip("scipy.stats")
    expected = stats.kendalltau(x, y, variant="b").statistic
    assert kendall_tau(x, y) == pytest.approx(expected)


def test_win_rate_counts_ties_half():
    # Win, tie, loss, tie: (1 + 0.5 + 0 + 0.5) / 4 = 0.5.
    assert win_rate([1.0, 0.0, 2.0, 1.0], [0.0, 0.0, 3.0, 1.0]) == pytest.approx(0.5)
    assert win_rate([2.0, 2.0], [1.0, 0.0]) == 1.0
    with pytest.raises(ValueError, match="one baseline reward per prompt"):
        win_rate([1.0], [1.0, 2.0])


def test_kl_estimate_mean_difference():
    # (-1 - (-1.5) + (-2 - (-1))) / 2 = (0.5 - 1) / 2 = -0.25: a single estimate can be negative.
    assert kl_estimate([-1.0, -2.0], [-1.5, -1.0]) == pytest.approx(-0.25)
    assert kl_estimate([-3.0, -4.0], [-3.0, -4.0]) == 0.0
    with pytest.raises(ValueError, match="at least one sample"):
        kl_estimate([], [])
