"""IPO loss: squared regression of the log-ratio margin onto 1 / (2 beta)."""

from __future__ import annotations

import torch
from pydantic import Field

from larpo.registry import StrictParams

from ._pairwise import PairSelection, PairwiseLoss


class IPOParams(StrictParams):
    beta: float = Field(
        0.1,
        gt=0,
        allow_inf_nan=False,
        description="Regularisation strength (tau in Azar et al.), target margin 1 / (2 beta).",
    )
    pairs: PairSelection = Field(
        "best-worst",
        description="Pairs taken from each list: best-worst (slot 0 vs last), best-all, or all.",
    )


class IPOLoss(PairwiseLoss):
    """Identity Preference Optimization: a squared loss that keeps the margin bounded.

    Intuition: DPO's logistic loss keeps pushing the margin towards infinity on
    deterministic preferences. IPO instead regresses it onto a finite target, so the
    policy stays closer to the reference.

    Other names: IPO, the identity-mapping case of PsiPO (TRL ``loss_type="ipo"``).

    Source: Azar et al., "A General Theoretical Paradigm to Understand Learning from
    Human Preferences" (arXiv 2310.12036), equation 17, as implemented by TRL's
    ``loss_type="ipo"``.

    For a pair (w above l), with h the difference of log-ratios (not scaled by beta)::

        h    = (policy_logps_w - ref_logps_w) - (policy_logps_l - ref_logps_l)
        loss = (h - 1 / (2 beta))^2

    Log-probs are sums over response tokens, as elsewhere in larpo.
    NOTE: TRL's IPO averages log-probs per token, but larpo keeps the sums.

    A list gives the mean over the pairs chosen by ``pairs``. Tied rewards form no pair.
    ``rewards/*`` diagnostics report s = beta * (policy_logps - ref_logps) as for DPO.

    Shapes: scores and mask are [B, K], and the result is [B].
    """

    def pair_losses(self, margins: torch.Tensor) -> torch.Tensor:
        # margins are beta * h, so h = margins / beta.
        log_ratio_margins = margins / self.beta
        return (log_ratio_margins - 1.0 / (2.0 * self.beta)) ** 2
