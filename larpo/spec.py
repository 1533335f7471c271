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

# Spec fields that hold a list of components, each ``{plugin: NAME, ...params}``.
COMPONENT_LIST_FIELDS = {
    "loggers": "logger",
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
            # Round r (1-based) uses entry r - 1; rounds past the list keep its last value.
            return self.temperature[min(max(round_index, 1), len(self.temperature)) - 1]
        return self.temperature


class OptimizationSpec(_Strict):
    lr: float = Field(1e-4, gt=0)
    epochs: int = Field(2, ge=1, description="Passes over the round's mined lists.")
    batch_size: int = Field(16, ge=1, description="Responses per optimiser step (all lists' items).")
    micro_batch_size: int = Field(16, ge=1, description="Responses per forward pass.")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass of the optimise phase: less memory, more compute.",
    )
    lora: LoraSpec | None = Field(default_factory=LoraSpec, description="null for full fine-tuning.")


class ReferenceSpec(_Strict):
    mode: Literal["round", "initial", "none"] = Field(
        "round", description="round: policy at the start of each round; initial: the starting model."
    )


class EvaluationSpec(_Strict):
    greedy: bool = True
    pass_k: int = Field(4, ge=0, description="Samples per held-out prompt for Pass@K; 0 disables.")
    pass_k_rounds: Literal["all", "first-last"] = Field(
        "all", description="Rounds that measure Pass@K: every round, or only round 0 and the last one."
    )
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
    loggers: list[Component] = Field(
        default_factory=list, description="Metric loggers that receive every round's and step's metrics."
    )
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
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
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
    errors.extend(_check_component_lists(data, spec, registries))
    if spec is not None and not errors:
        errors.extend(_check_reference(spec, registries["loss"]))
        errors.extend(_check_positives(spec, registries))
    if errors or spec is None:
        raise SpecError(errors)
    return spec


def _check_positives(spec: Spec, registries: dict[str, Registry]) -> list[tuple[str, str]]:
    """Reject a miner and loss that disagree on how many leading slots are positives."""
    miner = registries["miner"].get(spec.miner.plugin).params_model.model_validate(spec.miner.params())
    loss = registries["loss"].get(spec.loss.plugin).params_model.model_validate(spec.loss.params())
    mined = getattr(miner, "num_positives", None)
    expected = getattr(loss, "num_positives", None)
    if mined is None or expected is None or mined == expected:
        return []
    return [(
        "loss.num_positives",
        f"the loss treats {expected} leading slot(s) as positives but the miner puts {mined} "
        f"positive(s) first; set loss.num_positives and miner.num_positives to the same value",
    )]


def _check_reference(spec: Spec, losses: Registry) -> list[tuple[str, str]]:
    """Reject ``reference.mode: none`` with a loss that reads reference log-probs."""
    if spec.reference.mode != "none":
        return []
    loss = losses.build(spec.loss.plugin, spec.loss.params())
    if getattr(loss, "requires_reference", True):
        return [(
            "reference.mode",
            f"'none' needs a reference-free loss, but loss {spec.loss.plugin!r} reads reference "
            "log-probabilities. Use reference.mode 'round' or 'initial', or a reference-free loss "
            "such as simpo.",
        )]
    return []


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


def _check_component_lists(
    data: dict[str, Any], spec: Spec | None, registries: dict[str, Registry]
) -> list[tuple[str, str]]:
    """Check each item of the component-list fields; paths read ``loggers.0.log_dir``."""
    errors: list[tuple[str, str]] = []
    for field_name, kind in COMPONENT_LIST_FIELDS.items():
        if spec is not None:
            items: Any = [item.model_dump() for item in getattr(spec, field_name)]
        else:
            items = data.get(field_name)
        if not isinstance(items, list):
            continue  # missing (the default) or already reported by the top-level validation
        for index, raw in enumerate(items):
            if isinstance(raw, dict) and "plugin" in raw:
                errors.extend(_check_component(f"{field_name}.{index}", raw, registries[kind]))
    return errors


def resolve_spec(path: str | Path, overrides: list[str], registries: dict[str, Registry]) -> Spec:
    """Load, override and validate a spec file."""
    return validate_spec(apply_overrides(load_yaml(path), overrides), registries)


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def component_options(
    kind: str, registry: Registry, only: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build one JSON schema per registered component of ``kind``: ``{plugin: const NAME}`` plus its params.

    Returns the schemas and the ``$defs`` they reference, renamed ``KIND.NAME.MODEL``
    so that two plugins' nested models never share a name. Checks written as pydantic
    validators (for example the reasoning-gym task name) are not expressible here, so
    ``larpo validate`` still accepts less than the schema does.
    """
    options: list[dict[str, Any]] = []
    definitions: dict[str, Any] = {}
    for entry in registry:
        if only is not None and entry.name != only:
            continue
        prefix = f"{kind}.{entry.name}."
        params = entry.params_model.model_json_schema(ref_template="#/$defs/" + prefix + "{model}")
        for key, value in params.pop("$defs", {}).items():
            definitions[prefix + key] = value
        options.append({
            "title": f"{kind} {entry.name}",
            "description": entry.summary,
            "type": "object",
            "properties": {
                "plugin": {"const": entry.name, "description": f"Registered {kind} name."},
                **params.get("properties", {}),
            },
            "required": ["plugin", *params.get("required", [])],
            "additionalProperties": False,
            "x-larpo-distribution": f"{entry.distribution} {entry.version}".strip(),
        })
    return options, definitions


def _component_definition(kind: str, registry: Registry, definitions: dict[str, Any]) -> dict[str, str]:
    """Add the ``oneOf`` definition of one kind's components to ``definitions``; return a ``$ref`` to it."""
    options, extra = component_options(kind, registry)
    definitions.update(extra)
    definitions[f"{kind}-component"] = {
        "title": f"{kind} component",
        "description": f"A registered {kind} plugin and its params: {{plugin: NAME, ...params}}.",
        "oneOf": options,
    }
    return {"$ref": f"#/$defs/{kind}-component"}


def spec_json_schema(registries: dict[str, Registry]) -> dict[str, Any]:
    """Return the JSON schema of the whole spec, each component field a ``oneOf`` over its plugins."""
    schema = Spec.model_json_schema()
    definitions = schema.setdefault("$defs", {})
    definitions.pop("Component", None)
    for field_name, kind in COMPONENT_FIELDS.items():
        reference = _component_definition(kind, registries[kind], definitions)
        original = schema["properties"][field_name]
        field_keywords = {key: original[key] for key in ("default", "description") if key in original}
        schema["properties"][field_name] = {**reference, **field_keywords}
    for field_name, kind in COMPONENT_LIST_FIELDS.items():
        reference = _component_definition(kind, registries[kind], definitions)
        original = schema["properties"][field_name]
        field_keywords = {key: original[key] for key in ("default", "description") if key in original}
        schema["properties"][field_name] = {"type": "array", "items": reference, **field_keywords}
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def plugin_json_schema(registries: dict[str, Registry], name: str) -> dict[str, Any]:
    """Return the JSON schema of one plugin name, with one ``anyOf`` option per kind that registers it.

    Raises ``KeyError`` with a did-you-mean when no kind registers ``name``.
    """
    options: list[dict[str, Any]] = []
    definitions: dict[str, Any] = {}
    for kind, registry in registries.items():
        found, extra = component_options(kind, registry, only=name)
        options += found
        definitions.update(extra)
    if not options:
        every = sorted({entry_name for registry in registries.values() for entry_name in registry.names()})
        raise KeyError(f"no plugin registers a component named {name!r}.{_suggest(name, every)}")
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, "title": f"larpo plugin {name}", "anyOf": options}
    if definitions:
        schema["$defs"] = definitions
    return schema
