"""Built-in preference losses, registered through the ``larpo`` entry-point group."""

from __future__ import annotations

from typing import Any

from larpo import hookimpl

from .contrastive import ContrastiveLoss, ContrastiveParams


@hookimpl
def larpo_register_losses(register: Any) -> None:
    register(
        "contrastive",
        lambda params: ContrastiveLoss(**params.model_dump()),
        ContrastiveParams,
        summary="LarPO contrastive loss (S-DPO): top response against the rest of the list.",
    )
