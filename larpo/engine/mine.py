"""Mine phase: the miner turns each prompt's ranked pool into a training list."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from larpo.engine.context import RunContext
from larpo.types import Candidate, MiningResult

logger = logging.getLogger("larpo")


def run_mine(ctx: RunContext, pools: Mapping[str, Sequence[Candidate]]) -> MiningResult:
    result = ctx.miner.mine(pools, prompts=ctx.prompts_by_id)
    by_id = {c.id: c for pool in pools.values() for c in pool}
    for ranked in result.lists:
        missing = [cid for cid in ranked.candidate_ids if cid not in by_id]
        if missing:
            raise RuntimeError(f"miner returned candidate ids not in the pool: {missing[:3]}")
    result.report.update(reward_quantiles(result))
    return result


def reward_quantiles(result: MiningResult) -> dict[str, Any]:
    """Quantiles (10/50/90) of positive rewards, negative rewards and per-list margins.

    The first ``report["positives_per_list"]`` slots of each list (default 1) are its
    positives. A list's margin is its lowest positive reward minus its highest negative reward.
    """
    count = int(result.report.get("positives_per_list", 1))
    positives = [x for r in result.lists for x in r.rewards[:count]]
    negatives = [x for r in result.lists for x in r.rewards[count:]]
    margins = [min(r.rewards[:count]) - max(r.rewards[count:]) for r in result.lists if len(r.rewards) > count]
    report: dict[str, Any] = {}
    for name, values in (("positive", positives), ("negative", negatives), ("margin", margins)):
        if values:
            q10, q50, q90 = np.quantile(np.asarray(values, dtype=float), [0.1, 0.5, 0.9])
            report[f"quantiles/{name}"] = [float(q10), float(q50), float(q90)]
    return report


def log_report(round_index: int, report: Mapping[str, Any]) -> None:
    """Log the mining report as a two-column table."""
    width = max(len(key) for key in report) if report else 0
    lines = [f"  {key:<{width}}  {value}" for key, value in report.items()]
    logger.info("round %d mining report:\n%s", round_index, "\n".join(lines))
    hint = report.get("hint")
    if hint:
        logger.warning("round %d: %s", round_index, hint)
    if report.get("lists", 0) == 0:
        logger.warning(
            "round %d: no training lists survived mining. Raise rounds.samples_per_prompt or "
            "rounds.temperature so responses differ in reward, or lower miner.min_margin.",
            round_index,
        )
