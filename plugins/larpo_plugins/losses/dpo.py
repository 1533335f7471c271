"""DPO loss (sigmoid form), with optional conservative or robust label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from larpo.registry import StrictParams

from ._pairwise import PairSelection, PairwiseLoss


class DPOParams(StrictParams):
    beta: float = Field(
        0.1,
        gt=0,
        allow_inf_nan=False,
        description="Scale of s = beta * (policy_logps - ref_logps).",
    )
    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="Assumed probability that a label is flipped (cDPO). 0 is plain DPO.",
    )
    robust: bool = Field(
        False,
        description="Use the unbiased robust DPO form instead of conservative DPO when smoothing.",
    )
    pairs: PairSelection = Field(
        "best-worst",
        description="Pairs taken from each list: best-worst (slot 0 vs last), best-all, or all.",
    )


class DPOLoss(PairwiseLoss):
    """Direct Preference Optimization: a Bradley-Terry logistic loss on implicit rewards.

    Intuition: raise the policy's log-ratio of the better response over the worse one,
    relative to the reference policy, with beta setting how far it may move.

    Other names: sigmoid DPO (TRL ``loss_type="sigmoid"``), conservative DPO (cDPO) with
    label smoothing, and robust DPO (rDPO, TRL ``loss_type="robust"``) with ``robust=True``.

    Source: Rafailov et al., "Direct Preference Optimization: Your Language Model is
    Secretly a Reward Model" (2023). The two smoothing forms match TRL's ``DPOTrainer``
    losses ``sigmoid`` (with ``label_smoothing``) and ``robust``.

    For a pair (w above l) with s = beta * (policy_logps - ref_logps) and margin
    m = s_w - s_l, and smoothing eps::

        conservative:  loss = -(1 - eps) log sigmoid(m) - eps log sigmoid(-m)
        robust:        loss = (-(1 - eps) log sigmoid(m) + eps log sigmoid(-m)) / (1 - 2 eps)

    With eps = 0 both are -log sigmoid(m). A list gives the mean over the pairs chosen by
    ``pairs`` (default: slot 0 against the last valid slot). Tied rewards form no pair.

    Shapes: scores and mask are [B, K], and the result is [B].
    """

    def __init__(
        self,
        beta: float = 0.1,
        label_smoothing: float = 0.0,
        robust: bool = False,
        pairs: str = "best-worst",
    ) -> None:
        super().__init__(beta=beta, pairs=pairs)
        self.label_smoothing = label_smoothing
        self.robust = robust

    def pair_losses(self, margins: torch.Tensor) -> torch.Tensor:
        eps = self.label_smoothing
        clean = -F.logsigmoid(margins)  # loss if the label is right
        if eps == 0:
            return clean
        flipped = -F.logsigmoid(-margins)  # loss if the label is flipped
        if self.robust:
            return ((1 - eps) * clean - eps * flipped) / (1 - 2 * eps)
        return (1 - eps) * clean + eps * flipped
