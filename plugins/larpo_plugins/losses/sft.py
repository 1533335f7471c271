"""SFT loss: negative log-likelihood of the best response (slot 0)."""

from __future__ import annotations

import torch
from pydantic import Field

from larpo.losses import ListwiseLoss, per_token
from larpo.registry import StrictParams


class SFTParams(StrictParams):
    length_normalize: bool = Field(
        True,
        description="Divide the log-likelihood by the response's token count (per-token NLL).",
    )


class SFTLoss(ListwiseLoss):
    """Supervised fine-tuning on the top-ranked response of each list.

    Intuition: plain maximum likelihood on the best response, in IR terms direct
    retriever training on the positive. It is mostly useful as a regulariser next to a
    preference loss (``weighted``), where it keeps the positive's likelihood from falling.

    Other names: NLL loss, behaviour cloning.

    Formula, for the positive in slot 0 with summed log-prob logp_0 and n_0 tokens::

        length_normalize=True:   loss = -logp_0 / n_0
        length_normalize=False:  loss = -logp_0

    Unlike the preference losses, a list with only its positive still gives this loss.
    A list whose slot 0 is padded gives 0. ``ref_logps`` and ``rewards`` are not used
    for the loss (``requires_reference = False``). ``rewards/*`` diagnostics report the
    (per-token, when normalised) policy log-probs.

    Shapes: policy_logps, lengths and mask are [B, K], and the result is [B].
    """

    requires_reference = False

    def __init__(self, length_normalize: bool = True) -> None:
        super().__init__(beta=1.0)
        self.length_normalize = length_normalize

    def scores(self, policy_logps, ref_logps, lengths=None):  # type: ignore[override]
        if not self.length_normalize:
            return policy_logps
        return per_token(policy_logps, lengths, "SFTLoss with length_normalize=True (or set length_normalize: false)")

    def list_losses(self, scores, mask, *, rewards, lengths, policy_logps):  # type: ignore[override]
        positive = scores[:, 0]  # (B,)
        return torch.where(mask[:, 0], -positive, torch.zeros_like(positive))
