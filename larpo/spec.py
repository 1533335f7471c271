"""The run spec: pydantic models, YAML loading, ``--set`` overrides and full validation.

Validation reports every error at once, each with its dotted path, and never needs
model weights: components are checked against their plugin's params model.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from larpo.registry import Registry

COMPONENT_FIELDS = {
    "retriever": "retriever",
    "data": "prompts",
    "reranker": "reranker",
    "miner": "miner",
    "loss": "loss",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Component(BaseModel):
    """A component reference: ``{plugin: NAME, ...params}``. Params are checked by the plugin."""

    model_config = ConfigDict(extra="allow")

    plugin: str = Field(description="Registered name of the plugin.")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LoraSpec(_Strict):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names that receive adapters.",
    )


class RoundsSpec(_Strict):
    count: int = Field(3, ge=1, description="Number of LarPO rounds.")
    samples_per_prompt: int = Field(4, ge=2, description="Responses sampled per prompt (K).")
    temperature: float | list[float] = Field(
        1.0, description="Sampling temperature, or one value per round (the hard-negative knob)."
    )
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(48, ge=1)
    memorization: Literal["none", "previous", "all"] = Field(
        "none", description="Earlier rounds' candidates that join this round's pool."
    )

    @field_validator("temperature")
    @classmethod
    def _positive_temperature(cls, value: float | list[float]) -> float | list[float]:
        values = value if isinstance(value, list) else [value]
        if not values or any(t <= 0 for t in values):
            raise ValueError("sampling temperatures must be > 0 (greedy decoding yields no negatives)")
        return value

    def temperature_at(self, round_index: int) -> float:
        if isinstance(self.temperature, list):
            return self.temperature[min(round_index, len(self.temperature)) - 1]
        return self.temperature


class OptimizationSpec(_Strict):
    lr: float = Field(1e-4, gt=0)
    epochs: int = Field(2, ge=1, description="Passes over the round's mined lists.")
    batch_size: int = Field(16, ge=1, description="Responses per optimiser step (all lists' items).")
    micro_batch_size: int = Field(16, ge=1, description="Responses per forward pass.")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["no", "bf16", "fp16"] = "no"
    lora: LoraSpec | None = Field(default_factory=LoraSpec, description="null for full fine-tuning.")


class ReferenceSpec(_Strict):
    mode: Literal["round", "initial", "none"] = Field(
        "round", description="round: policy at the start of each round; initial: the starting model."
    )


class EvaluationSpec(_Strict):
    greedy: bool = True
    pass_k: int = Field(4, ge=0, description="Samples per held-out prompt for Pass@K; 0 disables.")
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int | None = Field(None, ge=1, description="Defaults to rounds.max_new_tokens.")
    success_threshold: float = Field(1.0, description="A response with reward >= this counts as correct.")


class Spec(_Strict):
    retriever: Component
    data: Component
    reranker: Component
    miner: Component = Field(default_factory=lambda: Component(plugin="rank"))
    loss: Component = Field(default_factory=lambda: Component(plugin="contrastive"))
    rounds: RoundsSpec = Field(default_factory=RoundsSpec)
    optimization: OptimizationSpec = Field(default_factory=OptimizationSpec)
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    output_dir: str = "runs/larpo"
    seed: int = 0


class SpecError(ValueError):
    """The spec is invalid; ``errors`` lists (dotted path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = [f"  {path}: {message}" for path, message in errors]
        super().__init__(f"invalid spec ({len(errors)} error(s)):\n" + "\n".join(lines))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a spec file with ``yaml.safe_load``."""
    path = Path(path)
    if not path.is_file():
        raise SpecError([("<file>", f"spec file not found: {path}")])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise SpecError([("<file>", f"invalid YAML in {path}: {error}")]) from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError([("<file>", f"{path} must contain a mapping, got {type(data).__name__}")])
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML scalars or lists."""
    data = copy.deepcopy(data)
    errors = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            errors.append((item, "invalid override; expected KEY=VALUE such as rounds.count=2"))
            continue
        value = yaml.safe_load(raw) if raw.strip() else ""
        parts = key.strip().split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                errors.append((".".join(parts[: depth + 1]), f"cannot set {key}: this key is not a mapping"))
                break
            node = child
        else:
            node[parts[-1]] = value
    if errors:
        raise SpecError(errors)
    return data


def _dotted(loc: tuple[Any, ...], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    parts += [str(part) for part in loc]
    return ".".join(parts) or "<root>"


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _model_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk ``loc`` (minus its last part) through nested models and return the valid keys there."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _translate(error: ValidationError, model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    results = []
    for item in error.errors():
        loc = tuple(item["loc"])
        path = _dotted(loc, prefix)
        if item["type"] == "extra_forbidden":
            valid = _model_fields(model, loc)
            message = f"unknown key {loc[-1]!r}.{_suggest(str(loc[-1]), valid)}"
            if valid:
                message += f" Valid keys: {', '.join(valid)}"
        elif item["type"] == "literal_error":
            message = f"{item['msg']} (got {item.get('input')!r})"
        else:
            message = item["msg"]
        results.append((path, message))
    return results


def validate_spec(data: dict[str, Any], registries: dict[str, Registry]) -> Spec:
    """Validate the whole spec, components included; raise :class:`SpecError` with every error."""
    errors: list[tuple[str, str]] = []
    try:
        spec = Spec.model_validate(data)
    except ValidationError as error:
        errors.extend(_translate(error, Spec))
        spec = None
    for field_name, kind in COMPONENT_FIELDS.items():
        raw = data.get(field_name) if spec is None else getattr(spec, field_name).model_dump()
        if raw is None and spec is not None:
            continue
        if not isinstance(raw, dict) or "plugin" not in raw:
            continue  # already reported by the top-level validation
        errors.extend(_check_component(field_name, raw, registries[kind]))
    if errors or spec is None:
        raise SpecError(errors)
    return spec


def _check_component(field_name: str, raw: dict[str, Any], registry: Registry) -> list[tuple[str, str]]:
    name = raw["plugin"]
    if name not in registry:
        return [(f"{field_name}.plugin", registry.unknown_message(str(name)))]
    entry = registry.get(name)
    params = {key: value for key, value in raw.items() if key != "plugin"}
    try:
        entry.params_model.model_validate(params)
    except ValidationError as error:
        return _translate(error, entry.params_model, prefix=field_name)
    return []


def resolve_spec(path: str | Path, overrides: list[str], registries: dict[str, Registry]) -> Spec:
    """Load, override and validate a spec file."""
    return validate_spec(apply_overrides(load_yaml(path), overrides), registries)
