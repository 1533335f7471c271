"""Shared reranker behaviour: fixed scores for invalid responses and the score cache.

A response is ``empty`` when its text is blank and ``truncated`` when it has no
end-of-sequence token (``Candidate.finished`` is False). Empty responses never reach
the model. Truncated ones get ``truncated_reward`` when it is set, and are otherwise
scored by the model and keep the ``truncated`` status, so the round's metrics count them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch
from pydantic import Field

from larpo.registry import StrictParams
from larpo.score_cache import ScoreCache, reranker_identity
from larpo.types import STATUS_EMPTY, STATUS_OK, STATUS_TRUNCATED, Candidate, Prompt, Score

# Shared default for the reward of an empty response. It is below every cosine
# similarity and below the rewards that typical reward models and log-odds judges give.
# NOTE: a reward model whose logits go below -10 ranks empty responses above its worst
# answers; set empty_reward to the bottom of that model's scale.
DEFAULT_INVALID_REWARD = -10.0

# Params that change speed or storage but never a score, left out of the cache identity.
NON_SCORING_PARAMS = ("batch_size", "device", "cache", "cache_path")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# (prompt text, response text, context such as a reference answer)
Pair = tuple[str, str, str]

T = TypeVar("T")


class InvalidResponseParams(StrictParams):
    empty_reward: float = Field(
        DEFAULT_INVALID_REWARD, allow_inf_nan=False, description="Reward of a blank response (status empty)."
    )
    truncated_reward: float | None = Field(
        None,
        allow_inf_nan=False,
        description="Reward of a response cut at max_new_tokens (status truncated); "
        "null scores it with the model and keeps the truncated status.",
    )


class RerankerParams(InvalidResponseParams):
    cache: bool = Field(True, description="Keep scores in memory so a re-ranked pool is never scored twice.")
    cache_path: str | None = Field(
        None, description="JSONL file that stores scores across runs; null keeps them in memory only."
    )


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def precheck(response: Candidate, params: InvalidResponseParams) -> Score | None:
    """Return the fixed score of an empty or (when configured) truncated response, else None."""
    if not response.text.strip():
        return Score(params.empty_reward, STATUS_EMPTY)
    if not response.finished and params.truncated_reward is not None:
        return Score(params.truncated_reward, STATUS_TRUNCATED)
    return None


class CachedReranker:
    """Base class: applies :func:`precheck`, the score cache, then ``score_pairs`` on the rest.

    Subclasses set ``plugin_name`` and implement ``score_pairs``; they override
    ``context`` when a score depends on more than the prompt and response text.
    """

    plugin_name = "<unnamed>"

    def __init__(self, params: RerankerParams) -> None:
        self.params = params
        self.cache: ScoreCache | None = None
        if params.cache:
            identity = reranker_identity(self.plugin_name, params.model_dump(mode="json"), NON_SCORING_PARAMS)
            self.cache = ScoreCache(identity, params.cache_path)

    def context(self, prompt: Prompt) -> str:
        return ""

    def score_pairs(self, pairs: Sequence[Pair]) -> list[Score]:
        raise NotImplementedError

    def score(self, prompts: Sequence[Prompt], responses: Sequence[Candidate]) -> list[Score]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        results: list[Score | None] = [precheck(response, self.params) for response in responses]
        pending = [index for index, result in enumerate(results) if result is None]
        pairs = [(prompts[i].text, responses[i].text, self.context(prompts[i])) for i in pending]
        if self.cache is not None:
            scores = self.cache.get_or_score(pairs, lambda missing: self.score_pairs([pairs[i] for i in missing]))
        else:
            scores = self.score_pairs(pairs)
        for index, score in zip(pending, scores):
            status = score.status
            if status == STATUS_OK and not responses[index].finished:
                status = STATUS_TRUNCATED
            results[index] = Score(score.reward, status)
        return [result for result in results if result is not None]


def chat_text(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str | None:
    """Apply the tokenizer's chat template; return None when it has none."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return str(text)


def load_frozen_model(auto_class: Any, params: Any) -> tuple[Any, Any]:
    """Load ``params.model`` with ``auto_class`` and its tokenizer, on ``params.device``.

    ``params`` needs the fields model, tokenizer, dtype, device and trust_remote_code.
    """
    from transformers import AutoTokenizer

    from larpo.model_source import resolve_model

    path = resolve_model(params.model)
    tokenizer_path = resolve_model(params.tokenizer) if params.tokenizer else path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, trust_remote_code=params.trust_remote_code)
    model = auto_class.from_pretrained(path, dtype=DTYPES[params.dtype], trust_remote_code=params.trust_remote_code)
    model.to(resolve_device(params.device))
    return model, tokenizer
