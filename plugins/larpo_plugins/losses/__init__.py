"""Built-in preference losses, registered through the ``larpo`` entry-point group.

Each loss has its own module, and ``docs/losses.md`` compares them. Every built-in loss follows one
tie rule: responses with equal rewards form no ordered pair, so no loss orders them.
"""

from __future__ import annotations

from typing import Any

from larpo import hookimpl

from .contrastive import ContrastiveLoss, ContrastiveParams
from .dpo import DPOLoss, DPOParams
from .ipo import IPOLoss, IPOParams
from .lambdarank import LambdaRankLoss, LambdaRankParams
from .listmle import ListMLELoss, ListMLEParams
from .sft import SFTLoss, SFTParams
from .simpo import SimPOLoss, SimPOParams
from .weighted import WeightedLoss, WeightedParams


@hookimpl
def larpo_register_losses(register: Any) -> None:
    register(
        "contrastive",
        lambda params: ContrastiveLoss(**params.model_dump()),
        ContrastiveParams,
        summary="LarPO contrastive loss (S-DPO): top response against the rest of the list.",
    )
    register(
        "lambdarank",
        lambda params: LambdaRankLoss(**params.model_dump()),
        LambdaRankParams,
        summary="LarPO LambdaRank: logistic loss summed over ordered pairs, NDCG weights optional.",
    )
    register(
        "listmle",
        lambda params: ListMLELoss(**params.model_dump()),
        ListMLEParams,
        summary="LarPO ListMLE: Plackett-Luce likelihood of the whole ranked list (DPO-PL).",
    )
    register(
        "dpo",
        lambda params: DPOLoss(**params.model_dump()),
        DPOParams,
        summary="DPO (sigmoid) on best-vs-worst or other pairs, with optional label smoothing.",
    )
    register(
        "ipo",
        lambda params: IPOLoss(**params.model_dump()),
        IPOParams,
        summary="IPO: squared loss pulling the log-ratio margin to 1/(2 beta).",
    )
    register(
        "simpo",
        lambda params: SimPOLoss(**params.model_dump()),
        SimPOParams,
        summary="SimPO: reference-free, length-normalised DPO with target margin gamma.",
    )
    register(
        "sft",
        lambda params: SFTLoss(**params.model_dump()),
        SFTParams,
        summary="SFT: negative log-likelihood of the top response, per token by default.",
    )
    register(
        "weighted",
        WeightedLoss.from_params,
        WeightedParams,
        summary="Weighted sum of other registered losses, e.g. contrastive plus a small sft term.",
    )
