"""Helpers shared by the built-in losses: pair selection, pair reduction, masked scores.

Tie rule, shared by every built-in loss: slot order is the rank order (best first). When
``rewards`` are given, two slots with equal rewards form no ordered pair, so no loss
pushes one tied response above another (see :func:`larpo.losses.pair_mask`).
"""

from __future__ import annotations

from typing import Literal

import torch

from larpo.losses import ListwiseLoss, pair_mask

PairSelection = Literal["best-worst", "best-all", "all"]
PAIR_SELECTIONS: tuple[str, ...] = ("best-worst", "best-all", "all")


def zero_padded(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return ``scores`` with padded slots set to 0, so their values never reach a loss.

    ``masked_fill`` passes no gradient to the filled slots, so padded slots also get a
    zero gradient whatever they contained.
    """
    return scores.masked_fill(~mask, 0.0)


def last_valid_slot(mask: torch.Tensor) -> torch.Tensor:
    """Return ``[B]`` long: the index of the last valid slot of each list (0 for empty rows)."""
    _, size = mask.shape
    positions = torch.arange(size, device=mask.device).expand_as(mask)  # (B, K)
    return torch.where(mask, positions, torch.zeros_like(positions)).max(dim=1).values


def select_pairs(mask: torch.Tensor, rewards: torch.Tensor | None, selection: str) -> torch.Tensor:
    """Return ``[B, K, K]`` bool: the ordered pairs (i above j) a pairwise loss is applied to.

    ``best-worst`` keeps slot 0 against the last valid slot, ``best-all`` keeps slot 0
    against every lower slot, and ``all`` keeps every ordered pair. Tied rewards never
    form a pair, so a tied best and worst slot give an empty selection.
    """
    pairs = pair_mask(mask, rewards)  # (B, K, K)
    if selection == "all":
        return pairs
    batch, size = mask.shape
    from_best = torch.zeros_like(pairs)
    from_best[:, 0, :] = pairs[:, 0, :]
    if selection == "best-all":
        return from_best
    if selection == "best-worst":
        worst = torch.nn.functional.one_hot(last_valid_slot(mask), size).bool()  # (B, K)
        return from_best & worst.unsqueeze(1)
    raise ValueError(f"unknown pair selection {selection!r}; expected one of {', '.join(PAIR_SELECTIONS)}")


def score_margins(scores: torch.Tensor) -> torch.Tensor:
    """Return ``[B, K, K]`` with entry (i, j) equal to s_i - s_j."""
    return scores.unsqueeze(2) - scores.unsqueeze(1)


def mean_over_pairs(pair_losses: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Average ``[B, K, K]`` pair losses over the selected pairs. Lists without pairs give 0."""
    selected = torch.where(pairs, pair_losses, torch.zeros_like(pair_losses))
    count = pairs.sum(dim=(1, 2)).clamp(min=1)
    return selected.sum(dim=(1, 2)) / count


class PairwiseLoss(ListwiseLoss):
    """Base class for pairwise losses applied to a list through a pair selection.

    Subclasses implement ``pair_losses(margins)``, mapping s_i - s_j to a loss for each
    pair. The loss of a list is the mean over its selected pairs, so it stays on the
    scale of one pair whatever K is. A list without a selected pair gives 0.
    """

    def __init__(self, beta: float = 0.1, pairs: str = "best-worst") -> None:
        super().__init__(beta=beta)
        if pairs not in PAIR_SELECTIONS:
            raise ValueError(f"unknown pair selection {pairs!r}; expected one of {', '.join(PAIR_SELECTIONS)}")
        self.pairs = pairs

    def pair_losses(self, margins: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def list_losses(self, scores, mask, *, rewards, lengths, policy_logps):  # type: ignore[override]
        scores = zero_padded(scores, mask)
        selected = select_pairs(mask, rewards, self.pairs)  # (B, K, K)
        return mean_over_pairs(self.pair_losses(score_margins(scores)), selected)
