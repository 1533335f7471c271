"""Miner ``rank``: positives from the top of the reranked pool, negatives from bottom or a window.

The helpers here (reward ranking, reward margins, the report and its relax hint) are
shared with the ``faiss`` miner, so both miners filter and report the same way.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from larpo import hookimpl
from larpo.registry import StrictParams
from larpo.types import Candidate, MiningResult, Prompt, RankedList

# Report keys: each filter that removes negatives counts them under "removed/<filter>".
REMOVED_ABSOLUTE_MARGIN = "removed/min_margin"
REMOVED_RELATIVE_MARGIN = "removed/relative_margin"
REMOVED_WINDOW = "removed/outside_window"

# The setting to relax when a filter removed the most negatives, keyed by report key.
RELAX_HINTS = {
    REMOVED_ABSOLUTE_MARGIN: "lower miner.min_margin",
    REMOVED_RELATIVE_MARGIN: "lower miner.relative_margin",
    REMOVED_WINDOW: "widen miner.window",
}


class RewardMarginParams(StrictParams):
    """Reward filters shared by the miners: which responses count as positives and as negatives."""

    num_positives: int = Field(
        1, ge=1, description="Top-ranked responses kept as positives (top-k)."
    )
    num_negatives: int = Field(3, ge=1, description="Negatives requested per list (m).")
    min_margin: float = Field(
        0.0,
        ge=0,
        description=(
            "Absolute reward margin: a negative's reward must be below the lowest positive's "
            "by more than this."
        ),
    )
    relative_margin: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "Relative reward margin: a negative's reward must be below p - |p| * relative_margin, "
            "where p is the lowest positive's reward (0.05 means at least 5% of |p| below it)."
        ),
    )


class RankMinerParams(RewardMarginParams):
    negatives: Literal["bottom", "window"] = Field(
        "bottom",
        description="bottom: the m lowest-ranked responses; window: those ranked inside `window`.",
    )
    window: tuple[int, int | None] = Field(
        (1, None),
        description=(
            "Rank window [start, end) for negatives=window, in 0-based ranks of the reward-sorted "
            "pool (0 is the best response); end null means the end of the pool."
        ),
    )
    sampling: Literal["top", "random"] = Field(
        "top",
        description=(
            "Inside the window, top takes the highest-ranked (hardest) negatives and random "
            "samples them."
        ),
    )
    seed: int = Field(
        0, description="Seed of sampling=random; combined with the prompt id per list."
    )

    @model_validator(mode="after")
    def _check_window(self) -> RankMinerParams:
        start, end = self.window
        if start < 0:
            raise ValueError(f"window start must be >= 0, got {start}")
        if end is not None and end <= start:
            raise ValueError(f"window end must be greater than its start, got [{start}, {end}]")
        if self.sampling == "random" and self.negatives != "window":
            raise ValueError(
                "sampling=random applies only to negatives=window; set negatives: window"
            )
        return self


def rank_by_reward(pool: Sequence[Candidate]) -> list[Candidate]:
    """Sort the scored candidates by reward, best first; ties keep sampling order (stable sort)."""
    scored = [c for c in pool if c.reward is not None]
    return sorted(scored, key=lambda c: -float(c.reward))  # type: ignore[arg-type]


def has_reward_spread(ranked: Sequence[Candidate]) -> bool:
    """Return True when the ranked pool contains at least two distinct rewards."""
    return len(ranked) >= 2 and ranked[0].reward != ranked[-1].reward


def margin_filter(
    params: RewardMarginParams,
    positives: Sequence[Candidate],
    candidates: Sequence[Candidate],
    counts: Counter[str],
) -> list[Candidate]:
    """Keep the candidates whose reward is strictly below the lowest positive's, minus both margins.

    A candidate removed by a margin is counted under the first margin it fails. A
    candidate tied with the lowest positive is not counted, because it is not a negative.
    """
    lowest = float(positives[-1].reward)  # type: ignore[arg-type]
    absolute_floor = lowest - params.min_margin
    relative_floor = lowest - abs(lowest) * params.relative_margin
    survivors = []
    for candidate in candidates:
        reward = float(candidate.reward)  # type: ignore[arg-type]
        if reward >= lowest:
            continue
        if reward >= absolute_floor:
            counts[REMOVED_ABSOLUTE_MARGIN] += 1
            continue
        if params.relative_margin > 0 and reward >= relative_floor:
            counts[REMOVED_RELATIVE_MARGIN] += 1
            continue
        survivors.append(candidate)
    return survivors


def make_list(
    prompt_id: str, chosen: Sequence[Candidate], rewards: Sequence[float] | None = None
) -> RankedList:
    return RankedList(
        prompt_id=prompt_id,
        candidate_ids=[c.id for c in chosen],
        rewards=list(rewards) if rewards is not None else [float(c.reward) for c in chosen],  # type: ignore[arg-type]
    )


def build_report(
    pools: Mapping[str, Sequence[Candidate]],
    lists: Sequence[RankedList],
    counts: Counter[str],
    hints: Mapping[str, str] = RELAX_HINTS,
) -> dict[str, Any]:
    """Assemble a miner's report from its counters and add a relax hint when negatives fall short.

    Keys: ``lists``, ``dropped/<reason>`` (prompts without a list), ``removed/<filter>``
    (negatives removed by each filter), ``negatives/shortfall`` (requested negatives
    that no candidate filled) and ``lists/short`` (lists with a shortfall).
    """
    report: dict[str, Any] = {
        "prompts": len(pools),
        "lists": len(lists),
        "positives_per_list": counts.pop("positives_per_list", 1),
    }
    report.update({key: counts[key] for key in sorted(counts)})
    for key in (
        "dropped/no_reward_spread",
        "dropped/no_negative_after_filters",
        "negatives/shortfall",
        "lists/short",
    ):
        report.setdefault(key, 0)
    hint = relax_hint(report, hints)
    if hint:
        report["hint"] = hint
    return report


def relax_hint(report: Mapping[str, Any], hints: Mapping[str, str] = RELAX_HINTS) -> str | None:
    """Name the setting to relax when lists were dropped or came out short, or return None."""
    short = report.get("negatives/shortfall", 0) + report.get(
        "dropped/no_negative_after_filters", 0
    )
    if short == 0:
        return None
    removed = {key: report.get(key, 0) for key in hints if report.get(key, 0) > 0}
    if removed:
        worst = max(removed, key=lambda key: removed[key])
        return (
            f"too few negatives survive ({report.get('negatives/shortfall', 0)} missing, "
            f"{report.get('dropped/no_negative_after_filters', 0)} lists dropped): {hints[worst]}, "
            f"which removed {removed[worst]} negatives"
        )
    return (
        "too few negatives survive because the pools are small: raise rounds.samples_per_prompt, "
        "use rounds.memorization previous or all, or lower miner.num_negatives"
    )


class RankMiner:
    """Top-k positives against negatives chosen by reward rank, listed in rank order.

    Candidates are sorted by reward (descending); ties keep sampling order, so the
    result is deterministic. A prompt whose candidates all have the same reward gives
    no preference signal: it is skipped and counted as ``dropped/no_reward_spread``.
    A negative must score strictly below the lowest positive and clear both margins.
    ``negatives=bottom`` keeps the m lowest-ranked such responses. ``negatives=window``
    keeps those whose rank lies in ``window``, taking the best-ranked (``top``) or a
    seeded random sample (``random``). A pool with fewer eligible negatives than
    requested gives a shorter list and counts the missing ones in ``negatives/shortfall``.
    """

    def __init__(self, params: RankMinerParams) -> None:
        self.params = params

    def mine(
        self,
        pools: Mapping[str, Sequence[Candidate]],
        *,
        prompts: Mapping[str, Prompt] | None = None,
    ) -> MiningResult:
        params = self.params
        lists: list[RankedList] = []
        counts: Counter[str] = Counter()
        counts["positives_per_list"] = params.num_positives
        for prompt_id, pool in pools.items():
            ranked = rank_by_reward(pool)
            counts["skipped/unscored"] += len(pool) - len(ranked)
            if not has_reward_spread(ranked):
                counts["dropped/no_reward_spread"] += 1
                continue

            positives = ranked[: params.num_positives]
            rest = list(enumerate(ranked))[len(positives) :]
            if params.negatives == "window":
                start, end = params.window
                end = len(ranked) if end is None else end
                inside = [(rank, c) for rank, c in rest if start <= rank < end]
                counts[REMOVED_WINDOW] += self._count_below(positives, rest) - self._count_below(
                    positives, inside
                )
                rest = inside
            eligible = margin_filter(params, positives, [c for _, c in rest], counts)
            if not eligible:
                counts["dropped/no_negative_after_filters"] += 1
                continue

            negatives = self._select(prompt_id, eligible)
            missing = params.num_negatives - len(negatives)
            if missing > 0:
                counts["negatives/shortfall"] += missing
                counts["lists/short"] += 1
            lists.append(make_list(prompt_id, positives + negatives))
        return MiningResult(lists=lists, report=build_report(pools, lists, counts))

    @staticmethod
    def _count_below(
        positives: Sequence[Candidate], ranked: Sequence[tuple[int, Candidate]]
    ) -> int:
        lowest = float(positives[-1].reward)  # type: ignore[arg-type]
        return sum(1 for _, c in ranked if float(c.reward) < lowest)  # type: ignore[arg-type]

    def _select(self, prompt_id: str, eligible: list[Candidate]) -> list[Candidate]:
        """Pick up to ``num_negatives`` eligible negatives; input and output are in rank order."""
        params = self.params
        if params.negatives == "bottom":
            return eligible[-params.num_negatives :]
        if params.sampling == "top" or len(eligible) <= params.num_negatives:
            return eligible[: params.num_negatives]
        rng = random.Random(f"{params.seed}:{prompt_id}")
        picked = sorted(rng.sample(range(len(eligible)), params.num_negatives))
        return [eligible[i] for i in picked]


@hookimpl
def larpo_register_miners(register: Any) -> None:
    register(
        "rank",
        RankMiner,
        RankMinerParams,
        summary="Top-k positives against the bottom-m or a rank window of negatives by reward.",
    )
