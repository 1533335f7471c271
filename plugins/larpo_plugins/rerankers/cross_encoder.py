"""Reranker ``cross-encoder``: a sentence-transformers ``CrossEncoder`` scoring (prompt, response) pairs.

The reward is the model's raw logit by default, since a sigmoid squashes differences
between strong answers. The cross-encoder tokenizes the texts with its own tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from larpo import hookimpl
from larpo.model_source import resolve_model
from larpo.types import Score
from larpo_plugins.rerankers.common import CachedReranker, Pair, RerankerParams, resolve_device

NAME = "cross-encoder"


class CrossEncoderParams(RerankerParams):
    model: str = Field(description="Folder or hub id of a sentence-transformers CrossEncoder.")
    activation: Literal["identity", "sigmoid"] = Field(
        "identity", description="identity returns raw logits; sigmoid maps them to (0, 1)."
    )
    label_index: int = Field(0, ge=0, description="Output column read as the reward when the model has several.")
    max_length: int | None = Field(None, ge=8, description="Tokens per pair; null keeps the model's limit.")
    batch_size: int = Field(32, ge=1, description="Pairs per forward pass.")
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda, cuda:1, ...")


class CrossEncoderReranker(CachedReranker):
    """Scores each (prompt, response) pair with a cross-encoder."""

    plugin_name = NAME

    def __init__(self, params: CrossEncoderParams) -> None:
        from sentence_transformers import CrossEncoder

        super().__init__(params)
        self.params: CrossEncoderParams = params
        self.model = CrossEncoder(
            resolve_model(params.model), device=resolve_device(params.device), max_length=params.max_length
        )
        self.model_calls = 0

    @torch.no_grad()
    def score_pairs(self, pairs: Sequence[Pair]) -> list[Score]:
        if not pairs:
            return []
        activation = torch.nn.Identity() if self.params.activation == "identity" else torch.nn.Sigmoid()
        logits = self.model.predict(
            [(prompt, response) for prompt, response, _ in pairs],
            batch_size=self.params.batch_size,
            activation_fn=activation,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        self.model_calls += 1
        if logits.ndim == 2:  # (N, L) for a model with several labels
            if self.params.label_index >= logits.shape[1]:
                raise ValueError(
                    f"label_index {self.params.label_index} is out of range: the model has {logits.shape[1]} labels"
                )
            logits = logits[:, self.params.label_index]
        return [Score(float(value)) for value in logits]


@hookimpl
def larpo_register_rerankers(register: Any) -> None:
    register(
        NAME,
        CrossEncoderReranker,
        CrossEncoderParams,
        summary="Sentence-transformers cross-encoder scoring (prompt, response) pairs.",
    )
