"""Contrastive (InfoNCE / S-DPO) loss: one positive against the rest of the list."""

from __future__ import annotations

import torch
from pydantic import Field

from larpo.losses import ListwiseLoss, pair_mask
from larpo.registry import StrictParams

from ._pairwise import zero_padded


class ContrastiveParams(StrictParams):
    beta: float = Field(
        0.1,
        gt=0,
        allow_inf_nan=False,
        description="Scale of s = beta * (policy_logps - ref_logps).",
    )
    num_positives: int = Field(
        1,
        ge=1,
        description="Leading slots treated as positives, each contrasted with all negatives.",
    )


class ContrastiveLoss(ListwiseLoss):
    """Contrastive loss of LarPO, also known as S-DPO (softmax DPO) or InfoNCE over responses.

    Intuition: the top response should win a softmax over itself and the negatives, so
    every negative is pushed down at once, the hardest (highest-scoring) ones most.

    With one positive in slot 0 and negatives in slots 1..K-1::

        loss = -log( exp(s_0) / (exp(s_0) + sum_{k>=1} exp(s_k)) )

    where s = beta * (policy_logps - ref_logps) and the sum runs over valid slots only.
    With K = 2 this is DPO: -log sigmoid(s_0 - s_1).

    With ``num_positives = P``, slots 0..P-1 are positives and slots P..K-1 negatives.
    Each positive p is contrasted with the negatives only (never with another positive)::

        loss_p = -log( exp(s_p) / (exp(s_p) + sum_{n in N(p)} exp(s_n)) )
        N(p)   = {n >= P : n valid, reward_n < reward_p}

    and the list's loss is the mean of loss_p over the valid positives with a non-empty
    N(p). Ties: a negative whose reward equals the positive's is left out of N(p). A list
    with no positive that has a negative (one valid response, all rewards tied, or no
    slot after the positives) gives 0.

    Source: Jin et al., "LLM Alignment as Retriever Optimization" (ICML 2025), and
    Chen et al., "On Softmax Direct Preference Optimization for Recommendation" (2024).

    Shapes: scores and mask are [B, K], and the result is [B].
    """

    def __init__(self, beta: float = 0.1, num_positives: int = 1) -> None:
        super().__init__(beta=beta)
        self.num_positives = num_positives

    def list_losses(self, scores, mask, *, rewards, lengths, policy_logps):  # type: ignore[override]
        _, size = scores.shape
        num_positives = min(self.num_positives, size)
        scores = zero_padded(scores, mask)

        # contrasts[b, p, n]: positive p is contrasted with negative n.
        slots = torch.arange(size, device=scores.device)
        is_negative = (slots >= num_positives).view(1, 1, size)
        contrasts = pair_mask(mask, rewards)[:, :num_positives, :] & is_negative  # (B, P, K)

        # Each positive's normaliser pools its own score with its negatives' scores.
        self_slot = slots[:num_positives].view(1, num_positives, 1) == slots.view(1, 1, size)
        members = contrasts | self_slot  # (B, P, K)
        lowest = torch.finfo(scores.dtype).min
        pool = scores.unsqueeze(1).expand_as(members).masked_fill(~members, lowest)  # (B, P, K)
        terms = torch.logsumexp(pool, dim=2) - scores[:, :num_positives]  # (B, P)

        counted = contrasts.any(dim=2)  # (B, P): valid positive with at least one negative
        total = torch.where(counted, terms, torch.zeros_like(terms)).sum(dim=1)
        return total / counted.sum(dim=1).clamp(min=1)
