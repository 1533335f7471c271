"""Miner ``rank``: positives from the top of the reranked pool, negatives from the bottom."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from larpo import hookimpl
from larpo.registry import StrictParams
from larpo.types import Candidate, MiningResult, Prompt, RankedList


class RankMinerParams(StrictParams):
    num_positives: int = Field(1, ge=1, description="Top-ranked responses kept as positives.")
    num_negatives: int = Field(3, ge=1, description="Bottom-ranked responses kept as negatives (m).")
    min_margin: float = Field(
        0.0, ge=0, description="A negative's reward must be below the last positive's by more than this."
    )


class RankMiner:
    """Top-k positives against the bottom-m negatives by reward, in rank order.

    Candidates are sorted by reward (descending); ties keep sampling order, so the
    result is deterministic. A prompt whose candidates all have the same reward gives
    no preference signal: it is skipped and counted as ``dropped/no_reward_spread``.
    A negative must score strictly below the lowest positive (plus ``min_margin``).
    """

    def __init__(self, params: RankMinerParams) -> None:
        self.params = params

    def mine(
        self, pools: Mapping[str, Sequence[Candidate]], *, prompts: Mapping[str, Prompt] | None = None
    ) -> MiningResult:
        lists: list[RankedList] = []
        dropped_flat = 0
        dropped_margin = 0
        shortfall = 0
        for prompt_id, pool in pools.items():
            scored = [c for c in pool if c.reward is not None]
            ranked = sorted(scored, key=lambda c: -float(c.reward))  # type: ignore[arg-type]
            if len(ranked) < 2 or ranked[0].reward == ranked[-1].reward:
                dropped_flat += 1
                continue
            positives = ranked[: self.params.num_positives]
            floor = float(positives[-1].reward) - self.params.min_margin  # type: ignore[arg-type]
            eligible = [c for c in ranked[len(positives) :] if float(c.reward) < floor]  # type: ignore[arg-type]
            if not eligible:
                dropped_margin += 1
                continue
            negatives = eligible[-self.params.num_negatives :]
            shortfall += self.params.num_negatives - len(negatives)
            chosen = positives + negatives
            lists.append(
                RankedList(
                    prompt_id=prompt_id,
                    candidate_ids=[c.id for c in chosen],
                    rewards=[float(c.reward) for c in chosen],  # type: ignore[arg-type]
                )
            )
        report: dict[str, Any] = {
            "prompts": len(pools),
            "lists": len(lists),
            "dropped/no_reward_spread": dropped_flat,
            "dropped/no_negative_below_margin": dropped_margin,
            "negatives/shortfall": shortfall,
        }
        return MiningResult(lists=lists, report=report)


@hookimpl
def larpo_register_miners(register: Any) -> None:
    register(
        "rank",
        RankMiner,
        RankMinerParams,
        summary="Top-k positives against the bottom-m negatives by reranker reward.",
    )
