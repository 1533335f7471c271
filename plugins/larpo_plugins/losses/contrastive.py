"""Contrastive (InfoNCE / S-DPO) loss: one positive against the rest of the list."""

from __future__ import annotations

import torch
from pydantic import Field

from larpo.losses import ListwiseLoss
from larpo.registry import StrictParams


class ContrastiveParams(StrictParams):
    beta: float = Field(0.1, gt=0, description="Scale of s = beta * (policy_logps - ref_logps).")
    num_positives: int = Field(
        1,
        ge=1,
        description="Leading slots treated as positives; each is contrasted with all negatives.",
    )


class ContrastiveLoss(ListwiseLoss):
    """Contrastive loss of LarPO, also known as S-DPO (softmax DPO) or InfoNCE over responses.

    With one positive in slot 0 and negatives in slots 1..K-1::

        loss = -log( exp(s_0) / sum_k exp(s_k) ) = logsumexp_k(s_k) - s_0

    where s = beta * (policy_logps - ref_logps) and the sum runs over valid slots only.
    With K = 2 this is DPO: -log sigmoid(s_0 - s_1). With ``num_positives = P`` each
    positive p < P is contrasted with the negatives P..K-1 and the P terms are averaged.

    Source: Jin et al., "LLM Alignment as Retriever Optimization" (ICML 2025), and
    Chen et al., "On Softmax Direct Preference Optimization for Recommendation" (2024).

    Shapes: scores and mask are [B, K]; returns [B].
    """

    def __init__(self, beta: float = 0.1, num_positives: int = 1) -> None:
        super().__init__(beta=beta)
        self.num_positives = num_positives

    def list_losses(self, scores, mask, *, rewards, lengths, policy_logps):  # type: ignore[override]
        batch, size = scores.shape
        positives = min(self.num_positives, size)
        neg_inf = torch.finfo(scores.dtype).min
        negatives = mask.clone()
        negatives[:, :positives] = False
        negative_scores = scores.masked_fill(~negatives, neg_inf)  # (B, K)

        terms = []
        for slot in range(positives):
            # Each positive joins the negatives' normaliser: logsumexp over {s_p} U negatives.
            pool = torch.cat([scores[:, slot : slot + 1], negative_scores], dim=1)  # (B, 1 + K)
            term = torch.logsumexp(pool, dim=1) - scores[:, slot]
            terms.append(torch.where(mask[:, slot], term, torch.zeros_like(term)))
        stacked = torch.stack(terms, dim=1)  # (B, P)
        valid_positives = mask[:, :positives].sum(dim=1).clamp(min=1)
        return stacked.sum(dim=1) / valid_positives
