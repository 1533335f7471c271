"""Reranker ``length-penalty``: another reranker's reward minus a per-token length penalty.

reward = base_reward - min(per_token * max(0, num_tokens - free_tokens), max_penalty)

The wrapped reranker is named in the spec like any component (``base: {plugin: NAME,
...params}``), validated against that reranker's params model when the spec is
validated, and built through the same registry when the engine is built. The score
status of the base reranker is kept, so invalid responses are still counted as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails

from larpo import hookimpl
from larpo.registry import StrictParams, nested_component_errors
from larpo.types import Candidate, Prompt, Reranker, Score

NAME = "length-penalty"


def _base_errors(base: dict[str, Any]) -> list[InitErrorDetails]:
    """Validate ``{plugin: NAME, ...params}`` against the reranker registry; return its errors."""
    # NOTE: the base reranker is looked up in the process-wide plugin host, because
    # pydantic gives validators no handle on the registries passed to validate_spec.
    from larpo.plugins import registry

    return nested_component_errors(registry("reranker"), base)


class LengthPenaltyParams(StrictParams):
    base: dict[str, Any] = Field(
        description="The wrapped reranker, {plugin: NAME, ...that reranker's params}, e.g. {plugin: reasoning-gym}."
    )
    per_token: float = Field(0.01, ge=0, allow_inf_nan=False, description="Reward subtracted per response token.")
    free_tokens: int = Field(0, ge=0, description="Tokens per response that cost nothing.")
    max_penalty: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Largest amount subtracted from one reward; null means no cap."
    )

    @field_validator("base")
    @classmethod
    def _validate_base(cls, base: dict[str, Any]) -> dict[str, Any]:
        errors = _base_errors(base)
        if errors:
            # pydantic places these errors under this field, so their paths read base.KEY.
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return base


class LengthPenaltyReranker:
    """Scores with a base reranker, then subtracts the length penalty from each reward."""

    def __init__(
        self, base: Reranker, *, per_token: float = 0.01, free_tokens: int = 0, max_penalty: float | None = None
    ) -> None:
        self.base = base
        self.per_token = per_token
        self.free_tokens = free_tokens
        self.max_penalty = max_penalty

    @classmethod
    def from_params(cls, params: LengthPenaltyParams) -> LengthPenaltyReranker:
        """Build the base reranker through the registry and wrap it (the registered factory)."""
        from larpo.plugins import registry

        base_params = {key: value for key, value in params.base.items() if key != "plugin"}
        base = registry("reranker").build(params.base["plugin"], base_params)
        return cls(base, per_token=params.per_token, free_tokens=params.free_tokens, max_penalty=params.max_penalty)

    def penalty(self, num_tokens: int) -> float:
        """Return the amount subtracted from the reward of a response of ``num_tokens`` tokens."""
        amount = self.per_token * max(0, num_tokens - self.free_tokens)
        if self.max_penalty is not None:
            amount = min(amount, self.max_penalty)
        return amount

    def score(self, prompts: Sequence[Prompt], responses: Sequence[Candidate]) -> list[Score]:
        scores = self.base.score(prompts, responses)
        if len(scores) != len(responses):
            raise ValueError(
                f"base reranker {type(self.base).__name__} returned {len(scores)} scores for {len(responses)} responses"
            )
        return [
            Score(score.reward - self.penalty(response.num_tokens), score.status)
            for score, response in zip(scores, responses)
        ]


@hookimpl
def larpo_register_rerankers(register: Any) -> None:
    register(
        NAME,
        LengthPenaltyReranker.from_params,
        LengthPenaltyParams,
        summary="Another reranker's reward minus a per-token length penalty (prefers shorter answers).",
    )
