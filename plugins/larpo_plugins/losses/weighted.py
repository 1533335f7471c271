"""Weighted loss: a weighted sum of other registered losses, named term by term in the spec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails
from torch import nn

from larpo.losses import ListwiseLoss, LossOutput
from larpo.registry import StrictParams, field_error, nested_component_errors

NAME = "weighted"
TERM_KEYS = ("plugin", "weight")


class TermWeight(StrictParams):
    weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="Multiplier of this term's loss.")


def validate_term(index: int, term: dict[str, Any]) -> tuple[dict[str, Any] | None, list[InitErrorDetails]]:
    """Validate one ``{plugin, weight, ...params}`` term and return it normalised, or its errors."""
    # NOTE: terms are looked up in the process-wide plugin host, not in the registries
    # passed to larpo.spec.validate_spec, because pydantic gives validators no such handle.
    from larpo.plugins import registry

    losses = registry("loss")
    errors = nested_component_errors(losses, term, loc=(index,), own_keys=TERM_KEYS)
    name = term.get("plugin")
    if name == NAME:
        message = "a weighted term cannot itself be 'weighted'; list its terms directly instead"
        return None, [field_error("nested_weighted", message, (index, "plugin"), name)]
    weight = 1.0
    try:
        weight = TermWeight.model_validate({"weight": term.get("weight", 1.0)}).weight
    except ValidationError as error:
        errors.extend(
            field_error("invalid_weight", item["msg"], (index, "weight"), item["input"]) for item in error.errors()
        )
    if errors:
        return None, errors
    validated = losses.get(str(name)).params_model.model_validate({k: v for k, v in term.items() if k not in TERM_KEYS})
    return {"plugin": name, "weight": weight, **validated.model_dump()}, []


class WeightedParams(StrictParams):
    terms: list[dict[str, Any]] = Field(
        min_length=1,
        description=(
            "Losses to add up, each {plugin: NAME, weight: W, ...that loss's params}. weight defaults to 1.0."
        ),
    )

    @field_validator("terms")
    @classmethod
    def _validate_terms(cls, terms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        normalised: list[dict[str, Any]] = []
        errors: list[InitErrorDetails] = []
        for index, term in enumerate(terms):
            result, term_errors = validate_term(index, term)
            errors.extend(term_errors)
            if result is not None:
                normalised.append(result)
        if not errors and sum(term["weight"] for term in normalised) <= 0:
            errors.append(
                field_error(
                    "zero_weights",
                    "every term has weight 0; give at least one term a positive weight",
                    (),
                    terms,
                )
            )
        if errors:
            # pydantic places these errors under this field, so their paths read terms.INDEX.KEY.
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return normalised


def _term_labels(names: Sequence[str]) -> list[str]:
    """Return one metric label per term: its loss name, plus ``_INDEX`` when a name repeats."""
    return [name if names.count(name) == 1 else f"{name}_{index}" for index, name in enumerate(names)]


class WeightedLoss(ListwiseLoss):
    """A weighted sum of registered losses, such as a preference loss plus an SFT term.

    Intuition: combine objectives that each miss something, for example a contrastive
    loss that can lower the positive's likelihood together with a small SFT term that
    keeps it up.

    Other names: loss mixing, multi-objective loss.

    Formula, for terms t with weights w_t and per-list losses loss_t::

        loss = sum_t w_t * loss_t

    From YAML::

        loss:
          plugin: weighted
          terms:
            - {plugin: contrastive, beta: 0.1, weight: 1.0}
            - {plugin: sft, weight: 0.05}

    Each term's params are validated against that loss's own params model. The loss
    needs the reference policy if any term does. Each term receives the inputs as given,
    except that terms with ``requires_reference = False`` receive ``ref_logps=None``.

    Diagnostics: the first term's metrics keep their names. Later terms add their
    ``rewards/*`` metrics under ``LABEL/rewards/*``, because their scores can differ,
    and add any other family that the first term lacks. ``loss/LABEL`` is each term's unweighted mean
    loss. LABEL is the loss name, with ``_INDEX`` added when a name repeats.

    Shapes: every input is [B, K], and the result is [B].
    """

    def __init__(self, terms: Sequence[tuple[str, float, ListwiseLoss]]) -> None:
        super().__init__(beta=1.0)  # unused: each term has its own beta
        if not terms:
            raise ValueError("WeightedLoss needs at least one (name, weight, loss) term")
        self.labels = _term_labels([name for name, _, _ in terms])
        self.weights = [float(weight) for _, weight, _ in terms]
        self.terms = nn.ModuleList([loss for _, _, loss in terms])
        self.requires_reference = any(loss.requires_reference for loss in self.terms)

    @classmethod
    def from_params(cls, params: WeightedParams) -> WeightedLoss:
        from larpo.plugins import registry

        losses = registry("loss")
        built = []
        for term in params.terms:
            options = {key: value for key, value in term.items() if key not in TERM_KEYS}
            built.append((term["plugin"], term["weight"], losses.build(term["plugin"], options)))
        return cls(built)

    def forward(
        self,
        *,
        policy_logps: torch.Tensor,
        mask: torch.Tensor,
        ref_logps: torch.Tensor | None = None,
        rewards: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> LossOutput:
        total: torch.Tensor | None = None
        metrics: dict[str, torch.Tensor] = {}
        for index, (label, weight, loss) in enumerate(zip(self.labels, self.weights, self.terms)):
            output = loss(
                policy_logps=policy_logps,
                mask=mask,
                ref_logps=ref_logps if loss.requires_reference else None,
                rewards=rewards,
                lengths=lengths,
            )
            weighted = weight * output.losses  # (B,)
            total = weighted if total is None else total + weighted
            metrics[f"loss/{label}"] = output.losses.detach().float().mean()
            for key, value in output.metrics.items():
                if index > 0 and key.startswith("rewards/"):
                    metrics[f"{label}/{key}"] = value
                elif key not in metrics:
                    metrics[key] = value
        assert total is not None  # __init__ rejects an empty term list
        return LossOutput(losses=total, metrics=metrics)
