"""Rerank phase: the reranker (reward model) scores every (prompt, response) pair."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from tqdm.auto import tqdm

from larpo.engine.context import RunContext
from larpo.types import SCORE_STATUSES, Candidate

CHUNK_PAIRS = 64


def run_rerank(ctx: RunContext, candidates: Sequence[Candidate], desc: str = "rerank") -> Counter[str]:
    """Set ``reward`` and ``status`` on each candidate in place; return counts per status."""
    statuses: Counter[str] = Counter()
    bar = tqdm(total=len(candidates), desc=desc, unit="response", disable=not ctx.is_main_process, leave=False)
    for start in range(0, len(candidates), CHUNK_PAIRS):
        chunk = candidates[start : start + CHUNK_PAIRS]
        prompts = [ctx.prompts_by_id[c.prompt_id] for c in chunk]
        scores = ctx.reranker.score(prompts, chunk)
        if len(scores) != len(chunk):
            raise RuntimeError(
                f"reranker {type(ctx.reranker).__name__} returned {len(scores)} scores for "
                f"{len(chunk)} responses; a reranker must return one score per response"
            )
        for candidate, score in zip(chunk, scores):
            if score.status not in SCORE_STATUSES:
                raise RuntimeError(
                    f"reranker returned unknown status {score.status!r} for {candidate.id}; "
                    f"expected one of {', '.join(SCORE_STATUSES)}"
                )
            candidate.reward = float(score.reward)
            candidate.status = score.status
            statuses[score.status] += 1
        bar.update(len(chunk))
    bar.close()
    return statuses
