"""Reranker ``ensemble``: a weighted sum of other rerankers' normalised rewards.

reward = sum_m weight_m * normalize_m(reward_m)

Each member is written like any component (``{plugin: NAME, weight: W, normalize: N,
...params}``) and its params are validated against that reranker's params model when
the spec is validated. ``normalize`` is ``none``, ``zscore`` ((r - mean) / std) or
``minmax`` ((r - min) / (max - min)), computed over the responses scored in one call.
A batch whose rewards are all equal normalises to 0. The combined status is the most
severe member status (empty, then unparsable, then truncated, then ok).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails

from larpo import hookimpl
from larpo.registry import field_error, nested_component_errors
from larpo.types import STATUS_EMPTY, STATUS_OK, STATUS_TRUNCATED, STATUS_UNPARSABLE, Candidate, Prompt, Reranker, Score
from larpo_plugins.rerankers.common import InvalidResponseParams, precheck

NAME = "ensemble"
NORMALIZATIONS = ("none", "zscore", "minmax")
MEMBER_KEYS = ("plugin", "weight", "normalize")
STATUS_SEVERITY = {STATUS_OK: 0, STATUS_TRUNCATED: 1, STATUS_UNPARSABLE: 2, STATUS_EMPTY: 3}

Normalization = Literal["none", "zscore", "minmax"]


def _member_errors(index: int, member: dict[str, Any]) -> list[InitErrorDetails]:
    """Validate one ``{plugin, weight, normalize, ...params}`` member; return its errors."""
    # NOTE: members are looked up in the process-wide plugin host, because pydantic
    # gives validators no handle on the registries passed to validate_spec.
    from larpo.plugins import registry

    errors = nested_component_errors(registry("reranker"), member, loc=(index,), own_keys=MEMBER_KEYS)
    weight = member.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not torch.isfinite(torch.tensor(weight)):
        errors.append(field_error("invalid_weight", "weight must be a finite number", (index, "weight"), weight))
    normalize = member.get("normalize")
    if normalize is not None and normalize not in NORMALIZATIONS:
        message = f"normalize must be one of {', '.join(NORMALIZATIONS)}"
        errors.append(field_error("invalid_normalize", message, (index, "normalize"), normalize))

    return errors


class EnsembleParams(InvalidResponseParams):
    members: list[dict[str, Any]] = Field(
        min_length=1,
        description="Rerankers to combine, each {plugin: NAME, weight: W (default 1), "
        "normalize: none|zscore|minmax (default: the ensemble's), ...that reranker's params}.",
    )
    normalize: Normalization = Field("none", description="Normalisation of members that do not set their own.")

    @field_validator("members")
    @classmethod
    def _validate_members(cls, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        errors = [error for index, member in enumerate(members) for error in _member_errors(index, member)]
        if errors:
            # pydantic places these errors under this field, so their paths read members.INDEX.KEY.
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return members


def normalize_rewards(rewards: torch.Tensor, method: str) -> torch.Tensor:
    """Normalise a ``[N]`` reward vector over the batch; a constant batch maps to zeros."""
    # NOTE: zscore and minmax depend on which responses share a score call, and the
    # engine's rerank phase scores 64 pairs per call, so one response can get different
    # ensemble rewards in different chunks.
    if method == "none" or rewards.numel() == 0:
        return rewards
    if method == "zscore":
        centred = rewards - rewards.mean()
        std = rewards.std(unbiased=False)
        return centred / std if std > 0 else torch.zeros_like(rewards)
    if method == "minmax":
        span = rewards.max() - rewards.min()
        return (rewards - rewards.min()) / span if span > 0 else torch.zeros_like(rewards)
    raise ValueError(f"unknown normalisation {method!r}; expected one of {', '.join(NORMALIZATIONS)}")


class EnsembleReranker:
    """Combines member rerankers by a weighted sum of their normalised rewards."""

    def __init__(
        self,
        members: Sequence[tuple[Reranker, float, str]],
        params: InvalidResponseParams | None = None,
    ) -> None:
        self.members = list(members)
        self.params = params or InvalidResponseParams()

    @classmethod
    def from_params(cls, params: EnsembleParams) -> EnsembleReranker:
        """Build each member through the registry (the registered factory)."""
        from larpo.plugins import registry

        members = []
        for member in params.members:
            member_params = {key: value for key, value in member.items() if key not in MEMBER_KEYS}
            reranker = registry("reranker").build(member["plugin"], member_params)
            members.append((reranker, float(member.get("weight", 1.0)), member.get("normalize") or params.normalize))
        return cls(members, params)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[Candidate]) -> list[Score]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        results: list[Score | None] = [precheck(response, self.params) for response in responses]
        pending = [index for index, result in enumerate(results) if result is None]
        if not pending:
            return [result for result in results if result is not None]

        total = torch.zeros(len(pending), dtype=torch.float64)
        severity = [0] * len(pending)
        for reranker, weight, method in self.members:
            scores = reranker.score([prompts[i] for i in pending], [responses[i] for i in pending])
            if len(scores) != len(pending):
                raise ValueError(
                    f"member reranker {type(reranker).__name__} returned {len(scores)} scores "
                    f"for {len(pending)} responses"
                )
            rewards = torch.tensor([score.reward for score in scores], dtype=torch.float64)
            total += weight * normalize_rewards(rewards, method)
            severity = [max(level, STATUS_SEVERITY[score.status]) for level, score in zip(severity, scores)]

        status_of = {level: status for status, level in STATUS_SEVERITY.items()}
        for position, index in enumerate(pending):
            results[index] = Score(float(total[position]), status_of[severity[position]])
        return [result for result in results if result is not None]


@hookimpl
def larpo_register_rerankers(register: Any) -> None:
    register(
        NAME,
        EnsembleReranker.from_params,
        EnsembleParams,
        summary="Weighted sum of other rerankers' rewards, each normalised none, zscore or minmax.",
    )
