"""SimPO loss: reference-free, length-normalised DPO with a target margin."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from larpo.losses import per_token
from larpo.registry import StrictParams

from ._pairwise import PairSelection, PairwiseLoss


class SimPOParams(StrictParams):
    beta: float = Field(
        2.0,
        gt=0,
        allow_inf_nan=False,
        description="Scale of the per-token reward s = beta * policy_logps / lengths.",
    )
    gamma: float = Field(
        0.5,
        ge=0,
        allow_inf_nan=False,
        description="Target reward margin subtracted from s_w - s_l.",
    )
    pairs: PairSelection = Field(
        "best-worst",
        description="Pairs taken from each list: best-worst (slot 0 vs last), best-all, or all.",
    )


class SimPOLoss(PairwiseLoss):
    """Simple Preference Optimization: DPO on the mean per-token log-prob, no reference.

    Intuition: the reward is the policy's own average log-probability per token, which
    is what decoding ranks by. Dividing by length removes the pull towards long responses
    that summed log-probs have, and the margin gamma requires a clear gap.

    Other names: SimPO (TRL ``CPOTrainer`` with ``loss_type="simpo"``).

    Source: Meng, Xia and Chen, "SimPO: Simple Preference Optimization with a
    Reference-Free Reward" (NeurIPS 2024). The defaults beta = 2.0 and gamma = 0.5 are
    those of torchtune's ``SimPOLoss``.

    For a pair (w above l)::

        s    = beta * policy_logps / lengths
        loss = -log sigmoid(s_w - s_l - gamma)

    ``ref_logps`` is ignored (``requires_reference = False``) and ``lengths`` is required.
    A list gives the mean over the pairs chosen by ``pairs``. Tied rewards form no pair.
    ``rewards/*`` diagnostics report the length-normalised s.

    Shapes: policy_logps, lengths and mask are [B, K], and the result is [B].
    """

    requires_reference = False

    def __init__(self, beta: float = 2.0, gamma: float = 0.5, pairs: str = "best-worst") -> None:
        super().__init__(beta=beta, pairs=pairs)
        self.gamma = gamma

    def scores(self, policy_logps, ref_logps, lengths=None):  # type: ignore[override]
        return self.beta * per_token(policy_logps, lengths, "SimPOLoss")  # (B, K)

    def pair_losses(self, margins: torch.Tensor) -> torch.Tensor:
        return -F.logsigmoid(margins - self.gamma)
