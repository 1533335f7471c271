"""Retrieval and alignment metrics on one candidate list or one set of prompts.

The policy is a retriever: it orders a prompt's candidate responses by its sequence
log-probability, and the reranker's rewards are the relevance labels. Every function
here is pure and takes plain sequences of floats, in the order its docstring gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def recall_at(rewards: Sequence[float], n: int, threshold: float) -> float:
    """Return Recall@n of one list ordered by the policy: 1.0 if any of its first n items is relevant.

    An item is relevant when its reward is >= ``threshold``. Averaged over prompts this
    is Pass@n for a list of n samples, because every sample is then in the top n.
    """
    if n < 1:
        raise ValueError(f"Recall@n needs n >= 1, got {n}")
    return 1.0 if any(reward >= threshold for reward in rewards[:n]) else 0.0


def ndcg_at_k(rewards: Sequence[float], k: int, exponential: bool = False) -> float:
    """Return NDCG@k of one list ordered by the policy, with the rewards as gains.

    DCG@k = sum over ranks i = 1..k of g_i / log2(1 + i), where g_i is the reward at rank i
    (or 2^r_i - 1 with ``exponential``). NDCG@k = DCG@k / IDCG@k, and IDCG@k is the DCG@k of
    the same rewards sorted in decreasing order. Gains must be non-negative, and the
    result is NaN when IDCG@k is 0 (every gain in the top k of the ideal order is 0),
    because then no order is better than another.
    """
    if k < 1:
        raise ValueError(f"NDCG@k needs k >= 1, got {k}")
    values = np.asarray(rewards, dtype=np.float64)
    gains = np.exp2(values) - 1.0 if exponential else values
    if np.any(gains < 0):
        raise ValueError(f"NDCG needs non-negative gains, got {gains.tolist()}; shift the rewards first")
    top = gains[:k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = float(np.sum(top * discounts[: len(top)]))
    ideal = np.sort(gains)[::-1][:k]
    idcg = float(np.sum(ideal * discounts[: len(ideal)]))
    if idcg == 0.0:
        return math.nan
    return dcg / idcg


def reciprocal_rank(rewards: Sequence[float], threshold: float) -> float:
    """Return 1 / rank of the first relevant item (reward >= ``threshold``) in policy order, 0 if none."""
    for rank, reward in enumerate(rewards, start=1):
        if reward >= threshold:
            return 1.0 / rank
    return 0.0


def mrr(lists: Sequence[Sequence[float]], threshold: float) -> float:
    """Return the mean reciprocal rank over lists of rewards, each ordered by the policy.

    MRR = (1 / |Q|) * sum over lists q of 1 / rank_q, where rank_q is the 1-based rank of
    the first item with reward >= ``threshold``, and 1 / rank_q = 0 when no item is relevant.
    """
    if not lists:
        raise ValueError("MRR needs at least one list")
    return sum(reciprocal_rank(rewards, threshold) for rewards in lists) / len(lists)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Return Kendall's tau-b between two scorings of the same items, counting ties.

    Over all pairs i < j, a pair is concordant (C) when x and y order it the same way and
    discordant (D) when they order it oppositely. With n0 = n(n - 1) / 2 pairs, t_x pairs
    tied in x and t_y pairs tied in y (a pair tied in both counts in each):

        tau_b = (C - D) / sqrt((n0 - t_x) * (n0 - t_y))

    The result is NaN when either scoring ties every pair (the denominator is 0), as in
    ``scipy.stats.kendalltau``. Pairs are counted directly, in O(n^2), for short lists.
    """
    if len(x) != len(y):
        raise ValueError(f"Kendall tau needs two scorings of the same items, got {len(x)} and {len(y)} values")
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    upper = np.triu_indices(len(a), k=1)
    dx = np.sign(a[:, None] - a[None, :])[upper]  # (n0,) sign of x_i - x_j per pair
    dy = np.sign(b[:, None] - b[None, :])[upper]
    n0 = dx.size
    ties_x = int(np.sum(dx == 0))
    ties_y = int(np.sum(dy == 0))
    denominator = math.sqrt((n0 - ties_x) * (n0 - ties_y))
    if denominator == 0.0:
        return math.nan
    # The product is +1 for a concordant pair, -1 for a discordant one and 0 for a tie.
    return float(np.sum(dx * dy)) / denominator


def win_rate(policy_rewards: Sequence[float], baseline_rewards: Sequence[float]) -> float:
    """Return the share of prompts where the policy's response beats the baseline's, ties counting half.

    win rate = (1 / |Q|) * sum over prompts q of [r_q > b_q] + 0.5 * [r_q = b_q], with the
    two reward sequences aligned by prompt.
    """
    if len(policy_rewards) != len(baseline_rewards):
        raise ValueError(
            f"win rate needs one baseline reward per prompt, got {len(policy_rewards)} and {len(baseline_rewards)}"
        )
    if not policy_rewards:
        raise ValueError("win rate needs at least one prompt")
    points = 0.0
    for reward, baseline in zip(policy_rewards, baseline_rewards):
        if reward > baseline:
            points += 1.0
        elif reward == baseline:
            points += 0.5
    return points / len(policy_rewards)


def kl_estimate(policy_logps: Sequence[float], reference_logps: Sequence[float]) -> float:
    """Return the Monte Carlo estimate of KL(policy || reference) from responses sampled from the policy.

    KL(p || q) = E_{y ~ p}[log p(y | x) - log q(y | x)] is estimated by the sample mean of
    log p(y_s | x_s) - log q(y_s | x_s) over the samples s. Each term can be negative and
    so can the estimate, but it is unbiased only when the responses were drawn from the
    policy itself (temperature 1, no top-p truncation).
    """
    if len(policy_logps) != len(reference_logps):
        raise ValueError(
            f"KL estimate needs paired log-probs, got {len(policy_logps)} policy and {len(reference_logps)} reference"
        )
    if not policy_logps:
        raise ValueError("KL estimate needs at least one sample")
    differences = np.asarray(policy_logps, dtype=np.float64) - np.asarray(reference_logps, dtype=np.float64)
    return float(np.mean(differences))
