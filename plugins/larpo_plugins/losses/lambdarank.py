"""LambdaRank loss: all-pairs logistic loss over a ranked list, optionally NDCG-weighted."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from larpo.losses import ListwiseLoss, pair_mask
from larpo.registry import StrictParams

from ._pairwise import score_margins, zero_padded


class LambdaRankParams(StrictParams):
    beta: float = Field(
        0.1,
        gt=0,
        allow_inf_nan=False,
        description="Scale of s = beta * (policy_logps - ref_logps).",
    )
    weighting: Literal["none", "ndcg"] = Field(
        "none",
        description=(
            "Pair weights: none (every ordered pair counts 1) or ndcg "
            "(|G_i - G_j| * |1/D_i - 1/D_j|, LiPO-lambda, needs rewards)."
        ),
    )


def model_ranks(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return ``[B, K]``: each valid slot's 1-based rank when the list is sorted by ``scores``.

    Equal scores are ranked by slot order, so ranks are distinct. Padded slots get rank 1
    (their weights are masked out anyway).
    """
    _, size = scores.shape
    s_i = scores.unsqueeze(2)  # (B, K, 1)
    s_j = scores.unsqueeze(1)  # (B, 1, K)
    earlier = torch.ones(size, size, dtype=torch.bool, device=scores.device).tril(diagonal=-1)
    ahead = (s_j > s_i) | ((s_j == s_i) & earlier)  # (B, K, K): slot j is ranked above slot i
    ahead = ahead & mask.unsqueeze(1)
    return 1 + ahead.sum(dim=2)


def ndcg_pair_weights(scores: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Return ``[B, K, K]`` LambdaLoss weights |G_i - G_j| * |1/D_i - 1/D_j| (no gradient).

    G = 2^reward - 1 is the gain and D = log2(1 + rank) the discount, with rank taken
    under the current (detached) scores.
    """
    with torch.no_grad():
        rewards = rewards.to(scores.dtype).masked_fill(~mask, 0.0)
        gains = torch.exp2(rewards) - 1  # (B, K)
        discounts = torch.log2(1 + model_ranks(scores.detach(), mask).to(scores.dtype))  # (B, K)
        gain_gaps = (gains.unsqueeze(2) - gains.unsqueeze(1)).abs()
        inverse = 1.0 / discounts
        discount_gaps = (inverse.unsqueeze(2) - inverse.unsqueeze(1)).abs()
        return gain_gaps * discount_gaps


class LambdaRankLoss(ListwiseLoss):
    """LambdaRank loss of LarPO: a logistic loss on every ordered pair of the list.

    Intuition: every response should score above every response ranked below it. With
    ``weighting="ndcg"``, pairs whose swap would change NDCG most (large reward gaps near
    the top of the model's current ranking) weigh more.

    Other names: all-pairs DPO or RankNet over responses (``weighting="none"``), and
    LiPO-lambda or LambdaLoss (``weighting="ndcg"``).

    Source: Jin et al., "LLM Alignment as Retriever Optimization" (ICML 2025) for the
    all-pairs form; Liu et al., "LiPO: Listwise Preference Optimization through
    Learning-to-Rank" (2024) for the LambdaLoss weights.

    With s = beta * (policy_logps - ref_logps) and the ordered pairs (i above j)::

        loss = sum_{i above j} w_ij * -log sigmoid(s_i - s_j)
        w_ij = 1                                           (weighting="none")
        w_ij = |G_i - G_j| * |1/D_i - 1/D_j|               (weighting="ndcg")
        G_i  = 2^reward_i - 1,   D_i = log2(1 + rank_i)

    where rank_i is slot i's 1-based rank under the current scores, detached. The pair
    losses are summed, not averaged, per list, following the paper's form, so a list of
    K responses with distinct rewards has K(K-1)/2 terms and its loss grows with K.
    With K = 2 and weighting "none" this is exactly DPO. Tied rewards form no pair, and
    under "ndcg" their gain gap is 0 anyway. The NDCG weights are not divided by the
    ideal DCG.

    Shapes: scores and mask are [B, K], and the result is [B].
    """

    def __init__(self, beta: float = 0.1, weighting: str = "none") -> None:
        super().__init__(beta=beta)
        if weighting not in ("none", "ndcg"):
            raise ValueError(f"unknown weighting {weighting!r}; expected 'none' or 'ndcg'")
        self.weighting = weighting

    def list_losses(self, scores, mask, *, rewards, lengths, policy_logps):  # type: ignore[override]
        scores = zero_padded(scores, mask)
        pairs = pair_mask(mask, rewards)  # (B, K, K)
        pair_losses = -F.logsigmoid(score_margins(scores))  # (B, K, K)
        if self.weighting == "ndcg":
            if rewards is None:
                raise ValueError(
                    "LambdaRankLoss with weighting='ndcg' needs rewards for the gains "
                    "G = 2^reward - 1; pass rewards=... or use weighting='none'"
                )
            pair_losses = pair_losses * ndcg_pair_weights(scores, mask, rewards)
        selected = torch.where(pairs, pair_losses, torch.zeros_like(pair_losses))
        return selected.sum(dim=(1, 2))
