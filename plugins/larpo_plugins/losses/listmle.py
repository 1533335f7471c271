"""ListMLE loss: Plackett-Luce negative log-likelihood of the reranker's order."""

from __future__ import annotations

import torch
from pydantic import Field

from larpo.losses import ListwiseLoss, pair_mask
from larpo.registry import StrictParams

from ._pairwise import zero_padded


class ListMLEParams(StrictParams):
    beta: float = Field(
        0.1,
        gt=0,
        allow_inf_nan=False,
        description="Scale of s = beta * (policy_logps - ref_logps).",
    )


class ListMLELoss(ListwiseLoss):
    """ListMLE loss of LarPO: the Plackett-Luce likelihood of the whole ranked list.

    Intuition: pick the best response from the list by a softmax over scores, remove it,
    pick the next best from what is left, and so on. The loss is the negative
    log-probability of drawing the reranker's order.

    Other names: Plackett-Luce loss, DPO-PL (LiPO's name for the Plackett-Luce form of DPO).

    Source: Jin et al., "LLM Alignment as Retriever Optimization" (ICML 2025); Xia et
    al., "Listwise Approach to Learning to Rank: Theory and Algorithm" (ICML 2008).

    With s = beta * (policy_logps - ref_logps) and the slots in rank order::

        loss = -sum_i log( exp(s_i) / sum_{j in N(i)} exp(s_j) )
        N(i) = {i} U {j : j below i, valid, reward_j < reward_i}

    Without ties (or without rewards) N(i) is i and every valid slot after it, which is
    the standard Plackett-Luce likelihood, and with K = 2 the loss is exactly DPO. Ties:
    slots with equal rewards are left out of each other's normalisers, so the loss never
    orders them: each tied response is only contrasted with the responses strictly below
    it. A list whose rewards are all equal gives 0. Padded slots are in no normaliser,
    and a list with one valid response gives 0 (its only term is log(e^s / e^s)).

    The normalisers are computed as one masked logsumexp over a [B, K, K] tensor, which
    is stable for any score range and costs O(K^2) per list.

    Shapes: scores and mask are [B, K], and the result is [B].
    """

    def list_losses(self, scores, mask, *, rewards, lengths, policy_logps):  # type: ignore[override]
        _, size = scores.shape
        scores = zero_padded(scores, mask)
        self_pairs = torch.eye(size, dtype=torch.bool, device=scores.device).unsqueeze(0)
        members = pair_mask(mask, rewards) | self_pairs  # (B, K, K): row i is N(i)
        lowest = torch.finfo(scores.dtype).min
        pool = scores.unsqueeze(1).expand_as(members).masked_fill(~members, lowest)  # (B, K, K)
        terms = torch.logsumexp(pool, dim=2) - scores  # (B, K): -log P(slot i picked from N(i))
        return torch.where(mask, terms, torch.zeros_like(terms)).sum(dim=1)
