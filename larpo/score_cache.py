"""Score cache for rerankers: a (prompt, response) pair scored once is never scored again.

A key is the SHA-256 of the reranker identity (plugin name plus the params that change
scores), the prompt text, the response text and an optional context string (for example
a reference answer). Entries live in memory and, when a path is given, are appended to a
JSONL file that later processes load on start, so a file can be shared by several
rerankers and runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from larpo.types import Score

logger = logging.getLogger(__name__)


def reranker_identity(plugin: str, params: Mapping[str, Any], ignore: Iterable[str] = ()) -> str:
    """Return a stable identity string for a reranker: its plugin name and sorted params.

    ``ignore`` names params that do not change scores (batch size, cache settings).
    """
    scoring_params = {key: value for key, value in params.items() if key not in set(ignore)}
    return json.dumps({"plugin": plugin, "params": scoring_params}, sort_keys=True, default=str)


class ScoreCache:
    """In-memory score cache with an optional append-only JSONL file behind it."""

    def __init__(self, identity: str, path: str | Path | None = None) -> None:
        self.identity = identity
        self.path = Path(path) if path is not None else None
        self._scores: dict[str, Score] = {}
        self.hits = 0
        self.misses = 0
        if self.path is not None and self.path.is_file():
            self._load(self.path)

    def key(self, prompt: str, response: str, context: str = "") -> str:
        payload = json.dumps([self.identity, prompt, response, context])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return len(self._scores)

    def get(self, prompt: str, response: str, context: str = "") -> Score | None:
        return self._scores.get(self.key(prompt, response, context))

    def put(self, prompt: str, response: str, score: Score, context: str = "") -> None:
        self._put_many([(self.key(prompt, response, context), score)])

    def get_or_score(
        self,
        pairs: Sequence[tuple[str, str, str]],
        score_missing: Callable[[list[int]], list[Score]],
    ) -> list[Score]:
        """Return a score for each ``(prompt, response, context)``, scoring only cache misses.

        ``score_missing`` receives the indices into ``pairs`` that were not cached, each
        distinct pair once, and returns their scores in that order.
        """
        keys = [self.key(prompt, response, context) for prompt, response, context in pairs]
        missing: list[int] = []
        first_index: dict[str, int] = {}
        for index, key in enumerate(keys):
            if key in self._scores or key in first_index:
                continue
            first_index[key] = index
            missing.append(index)
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            scores = score_missing(missing)
            if len(scores) != len(missing):
                raise ValueError(f"scoring function returned {len(scores)} scores for {len(missing)} pairs")
            self._put_many([(keys[index], score) for index, score in zip(missing, scores)])
        return [self._scores[key] for key in keys]

    def _put_many(self, items: list[tuple[str, Score]]) -> None:
        for key, score in items:
            self._scores[key] = score
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for key, score in items:
                handle.write(json.dumps({"key": key, "reward": score.reward, "status": score.status}) + "\n")

    def _load(self, path: Path) -> None:
        skipped = 0
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                    self._scores[row["key"]] = Score(float(row["reward"]), str(row["status"]))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    # A process killed mid-write leaves a partial last line.
                    skipped += 1
        if skipped:
            logger.warning("score cache %s: skipped %d unreadable lines", path, skipped)
