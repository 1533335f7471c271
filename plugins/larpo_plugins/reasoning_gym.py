"""Prompt source and reranker ``reasoning-gym``: procedurally generated tasks with answer checkers.

The prompt source draws distinct questions from a reasoning-gym task and splits them
into disjoint held-out and train sets. The reranker extracts the final answer from a
response and scores it with the task's own ``score_answer``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from larpo import hookimpl
from larpo.registry import StrictParams
from larpo.types import (
    STATUS_EMPTY,
    STATUS_OK,
    STATUS_TRUNCATED,
    STATUS_UNPARSABLE,
    Candidate,
    Prompt,
    PromptSplits,
    Score,
)

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class ReasoningGymDataParams(StrictParams):
    task: str = Field(description="reasoning-gym dataset name, for example chain_sum.")
    task_params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the task.")
    train_size: int = Field(64, ge=1, description="Distinct training prompts.")
    heldout_size: int = Field(128, ge=0, description="Distinct held-out prompts, disjoint from training.")
    seed: int = 0
    max_draws: int = Field(20_000, ge=1, description="Generated entries to scan for distinct questions.")
    instruction: str = Field("", description="Text appended to every question, e.g. an answer format.")

    @model_validator(mode="after")
    def _task_exists(self) -> ReasoningGymDataParams:
        from reasoning_gym.factory import DATASETS

        if self.task not in DATASETS:
            import difflib

            close = difflib.get_close_matches(self.task, list(DATASETS), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown reasoning-gym task {self.task!r}.{hint}")
        return self


class ReasoningGymPrompts:
    def __init__(self, params: ReasoningGymDataParams) -> None:
        self.params = params

    def load(self) -> PromptSplits:
        import reasoning_gym

        params = self.params
        wanted = params.train_size + params.heldout_size
        dataset = reasoning_gym.create_dataset(
            params.task, size=params.max_draws, seed=params.seed, **params.task_params
        )
        seen: set[str] = set()
        prompts: list[Prompt] = []
        for index, entry in enumerate(dataset):
            if entry["question"] in seen:
                continue
            seen.add(entry["question"])
            text = entry["question"] + (f" {params.instruction}" if params.instruction else "")
            metadata = {
                "task": params.task,
                "task_params": dict(params.task_params),
                "answer": entry["answer"],
                "entry": _plain(entry),
            }
            prompts.append(Prompt(id=f"{params.task}-{index}", text=text, metadata=metadata))
            if len(prompts) == wanted:
                break
        if len(prompts) < wanted:
            raise ValueError(
                f"reasoning-gym task {params.task!r} with {params.task_params} produced only "
                f"{len(prompts)} distinct questions in {params.max_draws} draws, but "
                f"train_size + heldout_size = {wanted}. Lower the sizes or widen task_params."
            )
        heldout = prompts[: params.heldout_size]
        return PromptSplits(train=prompts[params.heldout_size :], heldout=heldout)


def _plain(value: Any) -> Any:
    """Convert tuples and other containers to JSON-friendly lists and dicts."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class ReasoningGymRerankerParams(StrictParams):
    extract: Literal["auto", "answer-tag", "last-number", "full"] = Field(
        "auto",
        description="auto: <answer> tag if present, else the last number when the gold "
        "answer is numeric, else the whole response.",
    )
    truncated_reward: float | None = Field(
        None, description="Reward for responses cut at max_new_tokens; null scores them normally."
    )
    invalid_reward: float = Field(0.0, description="Reward for empty or unparsable responses.")


class ReasoningGymReranker:
    """Scores a response with the answer checker of the prompt's reasoning-gym task."""

    def __init__(self, params: ReasoningGymRerankerParams) -> None:
        self.params = params
        self._datasets: dict[tuple[str, str], Any] = {}

    def extract_answer(self, text: str, gold: str) -> str | None:
        mode = self.params.extract
        if mode in ("auto", "answer-tag"):
            tags = ANSWER_TAG.findall(text)
            if tags:
                return tags[-1].strip()
            if mode == "answer-tag":
                return None
        if mode == "last-number" or (mode == "auto" and NUMBER.fullmatch(gold.strip())):
            numbers = NUMBER.findall(text)
            return numbers[-1] if numbers else None
        return text.strip() or None

    def _scorer(self, task: str, task_params: dict[str, Any]) -> Any:
        """Return a dataset of ``task`` whose ``score_answer`` checks answers (cached per config)."""
        key = (task, repr(sorted(task_params.items())))
        if key not in self._datasets:
            import reasoning_gym

            self._datasets[key] = reasoning_gym.create_dataset(task, size=1, seed=0, **task_params)
        return self._datasets[key]

    def score(self, prompts: Sequence[Prompt], responses: Sequence[Candidate]) -> list[Score]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        scores = []
        for prompt, response in zip(prompts, responses):
            if "entry" not in prompt.metadata:
                raise ValueError(
                    f"prompt {prompt.id!r} has no reasoning-gym entry; the reasoning-gym reranker "
                    "needs prompts from the reasoning-gym prompt source"
                )
            scores.append(self._score_one(prompt, response))
        return scores

    def _score_one(self, prompt: Prompt, response: Candidate) -> Score:
        if not response.text.strip():
            return Score(self.params.invalid_reward, STATUS_EMPTY)
        if not response.finished and self.params.truncated_reward is not None:
            return Score(self.params.truncated_reward, STATUS_TRUNCATED)
        entry = prompt.metadata["entry"]
        answer = self.extract_answer(response.text, str(entry["answer"]))
        if answer is None:
            return Score(self.params.invalid_reward, STATUS_UNPARSABLE)
        scorer = self._scorer(prompt.metadata["task"], dict(prompt.metadata.get("task_params", {})))
        reward = float(scorer.score_answer(answer, entry))
        status = STATUS_OK if response.finished else STATUS_TRUNCATED
        return Score(reward, status)


@hookimpl
def larpo_register_prompt_sources(register: Any) -> None:
    register(
        "reasoning-gym",
        ReasoningGymPrompts,
        ReasoningGymDataParams,
        summary="Distinct questions of a reasoning-gym task, split into train and held-out sets.",
    )


@hookimpl
def larpo_register_rerankers(register: Any) -> None:
    register(
        "reasoning-gym",
        ReasoningGymReranker,
        ReasoningGymRerankerParams,
        summary="Scores answers with the reasoning-gym task's own checker (verifiable reward).",
    )
