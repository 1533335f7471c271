"""The loss interface shared by every preference loss, and lookup by registered name.

Every loss is a ``torch.nn.Module`` called with keyword tensors in rank order,
best first::

    policy_logps  [B, K] float   sum of policy log-probs over each response's tokens
    ref_logps     [B, K] float   same under the reference policy (None if reference-free)
    mask          [B, K] bool    False for padded slots of ragged lists
    rewards       [B, K] float   optional reranker rewards (ties, label weights)
    lengths       [B, K] int     optional response token counts (length normalisation)

and returns a :class:`LossOutput` whose ``losses`` is ``[B]`` (one loss per list)
and whose ``metrics`` holds detached diagnostics named by family.

From Python::

    import larpo
    loss_fn = larpo.losses.get("contrastive", beta=0.1)
    out = loss_fn(policy_logps=p, ref_logps=r, mask=m)
    out.losses.mean().backward()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class LossOutput:
    """Per-list losses ``[B]`` and detached scalar diagnostics."""

    losses: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class ListwiseLoss(nn.Module):
    """Base class: computes scores and shared diagnostics; subclasses implement ``list_losses``.

    Subclasses set ``requires_reference = False`` when they never read ``ref_logps``; the
    engine then skips the reference phase.
    """

    requires_reference: bool = True

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__()
        self.beta = beta

    def scores(
        self,
        policy_logps: torch.Tensor,
        ref_logps: torch.Tensor | None,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return s = beta * (policy_logps - ref_logps), shape [B, K].

        Reference-free losses override this (for example with a length-normalised score).
        """
        if ref_logps is None:
            raise ValueError(
                f"{type(self).__name__} needs ref_logps; pass the reference policy's "
                "log-probabilities or use a reference-free loss such as simpo"
            )
        return self.beta * (policy_logps - ref_logps)

    def forward(
        self,
        *,
        policy_logps: torch.Tensor,
        mask: torch.Tensor,
        ref_logps: torch.Tensor | None = None,
        rewards: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> LossOutput:
        check_shapes(policy_logps, mask, ref_logps, rewards, lengths)
        mask = mask.bool()
        if not self.requires_reference:
            ref_logps = None  # a reference-free loss never reads them, even when given
        scores = self.scores(policy_logps, ref_logps, lengths)
        losses = self.list_losses(scores, mask, rewards=rewards, lengths=lengths, policy_logps=policy_logps)
        metrics = list_diagnostics(scores, mask, policy_logps, ref_logps, rewards)
        return LossOutput(losses=losses, metrics=metrics)

    def list_losses(
        self,
        scores: torch.Tensor,
        mask: torch.Tensor,
        *,
        rewards: torch.Tensor | None,
        lengths: torch.Tensor | None,
        policy_logps: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError


def check_shapes(
    policy_logps: torch.Tensor,
    mask: torch.Tensor,
    ref_logps: torch.Tensor | None,
    rewards: torch.Tensor | None,
    lengths: torch.Tensor | None,
) -> None:
    if policy_logps.dim() != 2:
        raise ValueError(f"policy_logps must be [B, K], got shape {tuple(policy_logps.shape)}")
    named = {"mask": mask, "ref_logps": ref_logps, "rewards": rewards, "lengths": lengths}
    for name, tensor in named.items():
        if tensor is not None and tensor.shape != policy_logps.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)} but policy_logps has "
                f"{tuple(policy_logps.shape)}; every input must be [B, K]"
            )


def per_token(policy_logps: torch.Tensor, lengths: torch.Tensor | None, owner: str) -> torch.Tensor:
    """Return ``policy_logps / lengths`` ([B, K]); padded slots may have length 0, so it is clamped to 1."""
    if lengths is None:
        raise ValueError(
            f"{owner} needs lengths (response token counts, [B, K]) to normalise log-probs per token; "
            "pass lengths=..."
        )
    return policy_logps / lengths.to(policy_logps.dtype).clamp(min=1)


def pair_mask(mask: torch.Tensor, rewards: torch.Tensor | None) -> torch.Tensor:
    """Return ``[B, K, K]`` bool: True where slot i is ranked strictly above slot j.

    Both slots must be valid. Rank order is the slot order (best first); when ``rewards``
    are given, tied rewards form no ordered pair.
    """
    batch, size = mask.shape
    upper = torch.ones(size, size, dtype=torch.bool, device=mask.device).triu(diagonal=1)
    pairs = upper.unsqueeze(0) & mask.unsqueeze(2) & mask.unsqueeze(1)  # (B, K, K)
    if rewards is not None:
        pairs = pairs & (rewards.unsqueeze(2) > rewards.unsqueeze(1))
    return pairs


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum()
    if count == 0:
        return torch.zeros((), dtype=values.dtype, device=values.device)
    return torch.where(mask, values, torch.zeros_like(values)).sum() / count


@torch.no_grad()
def list_diagnostics(
    scores: torch.Tensor,
    mask: torch.Tensor,
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    rewards: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Detached diagnostics: implicit rewards of the chosen (rank 0) and rejected slots.

    ``rewards/accuracies`` is the pairwise ordering accuracy: the share of ordered pairs
    (i above j) with s_i > s_j.
    """
    scores = scores.detach().float()
    chosen = mask.clone()
    chosen[:, 1:] = False
    rejected = mask.clone()
    rejected[:, 0] = False
    pairs = pair_mask(mask, rewards)
    correct = (scores.unsqueeze(2) > scores.unsqueeze(1)) & pairs
    num_pairs = pairs.sum()
    metrics: dict[str, Any] = {
        "rewards/chosen": _masked_mean(scores, chosen),
        "rewards/rejected": _masked_mean(scores, rejected),
        "rewards/accuracies": correct.sum() / num_pairs.clamp(min=1),
        "logps/chosen": _masked_mean(policy_logps.detach().float(), chosen),
        "logps/rejected": _masked_mean(policy_logps.detach().float(), rejected),
    }
    metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    if ref_logps is not None:
        ratio = (policy_logps - ref_logps).detach().float()
        metrics["logratios/chosen"] = _masked_mean(ratio, chosen)
        metrics["logratios/rejected"] = _masked_mean(ratio, rejected)
    return metrics


def get(name: str, **params: Any) -> ListwiseLoss:
    """Build the loss registered as ``name`` with validated ``params``.

    ``larpo.losses.get("contrastive", beta=0.1)``. Unknown names raise ``KeyError``
    listing the installed losses; invalid params raise ``pydantic.ValidationError``.
    """
    from larpo.plugins import registry

    loss = registry("loss").build(name, params)
    if not isinstance(loss, ListwiseLoss):
        raise TypeError(f"loss plugin {name!r} returned {type(loss).__name__}, expected a larpo.losses.ListwiseLoss")
    return loss


def names() -> list[str]:
    """Return the names of the installed losses."""
    from larpo.plugins import registry

    return registry("loss").names()
