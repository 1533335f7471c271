"""Pool phase: this round's candidates join earlier rounds' (memorization), grouped by prompt.

Each round's scored candidates are stored in ``round-NNN/candidates.jsonl``. The pool
of round r is read back from those files, so memory contains one round's pool at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from larpo.atomic import read_jsonl
from larpo.engine.context import RunContext
from larpo.types import Candidate


def pool_rounds(round_index: int, memorization: str) -> list[int]:
    """Return the rounds whose candidates form round ``round_index``'s pool."""
    if memorization == "none":
        return [round_index]
    if memorization == "previous":
        return [r for r in (round_index - 1, round_index) if r >= 1]
    if memorization == "all":
        return list(range(1, round_index + 1))
    raise ValueError(f"unknown memorization {memorization!r}; expected none, previous or all")


def read_candidates(ctx: RunContext, round_index: int) -> Iterator[Candidate]:
    """Yield the candidates stored in ``round-NNN/candidates.jsonl``, in sampling order."""
    path = ctx.round_dir(round_index) / "candidates.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"candidates of round {round_index} not found: {path}. The pool needs every round that "
            "rounds.memorization selects; restore the file or start a new run."
        )
    for row in read_jsonl(path):
        yield Candidate.from_dict(row)


def build_pool(ctx: RunContext, round_index: int) -> dict[str, list[Candidate]]:
    """Group the pool's candidates by prompt, in round then sampling order.

    NOTE: the returned pool is held in memory for the mine phase, so with
    ``memorization: all`` its size grows with the number of rounds (nothing is kept
    between rounds, but a round's pool is not streamed prompt by prompt).
    """
    pools: dict[str, list[Candidate]] = defaultdict(list)
    seen: set[str] = set()
    for source_round in pool_rounds(round_index, ctx.rounds.memorization):
        for candidate in read_candidates(ctx, source_round):
            if candidate.id in seen:
                raise RuntimeError(f"candidate {candidate.id} appears twice in the pool of round {round_index}")
            seen.add(candidate.id)
            pools[candidate.prompt_id].append(candidate)
    return dict(pools)
