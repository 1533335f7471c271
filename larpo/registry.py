"""One registry per plugin kind: the single source of component names."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

KINDS = ("retriever", "reranker", "miner", "loss", "prompts", "logger")


class RegistrationError(ValueError):
    """A plugin tried to register an invalid or duplicate component."""


@dataclass(frozen=True)
class Entry:
    """A registered component: its name, factory, params model and owner."""

    kind: str
    name: str
    factory: Callable[[Any], Any]
    params_model: type[BaseModel]
    summary: str
    plugin: str
    distribution: str
    version: str


class Registry:
    """Components of one kind, keyed by name."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        # Set by the plugin host: returns a sentence naming the failed plugin that should
        # have provided a missing component, or None when no failed plugin matches.
        self.failure_note: Callable[[str], str | None] | None = None

    def add(
        self,
        name: str,
        factory: Callable[[Any], Any],
        params_model: type[BaseModel],
        *,
        summary: str = "",
        plugin: str = "<python>",
        distribution: str = "<python>",
        version: str = "",
    ) -> Entry:
        """Validate and store one component, rejecting duplicate names."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise RegistrationError(f"{self.kind} name {name!r} must be a non-empty string")
        if not callable(factory):
            raise RegistrationError(f"{self.kind} {name!r}: factory {factory!r} is not callable")
        if not (isinstance(params_model, type) and issubclass(params_model, BaseModel)):
            raise RegistrationError(
                f"{self.kind} {name!r}: params model must be a pydantic BaseModel subclass, got {params_model!r}"
            )
        if params_model.model_config.get("extra") != "forbid":
            raise RegistrationError(
                f"{self.kind} {name!r}: params model {params_model.__name__} must set "
                "model_config = ConfigDict(extra='forbid') so that misspelled keys are errors"
            )
        if name in self._entries:
            owner = self._entries[name]
            raise RegistrationError(
                f"duplicate {self.kind} name {name!r}: registered by plugin {owner.plugin!r} "
                f"({owner.distribution}) and again by plugin {plugin!r} ({distribution}). "
                "Uninstall one of them or restrict loading with LARPO_PLUGINS."
            )
        entry = Entry(self.kind, name, factory, params_model, summary, plugin, distribution, version)
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Withdraw a component, for example one registered by a plugin that later failed."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._entries[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def unknown_message(self, name: str) -> str:
        """Build the error text for a name that is not registered.

        When a plugin that failed to load matches the name, its failure comes first,
        because a did-you-mean would point the reader at the wrong fix.
        """
        failure = self.failure_note(name) if self.failure_note is not None else None
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close and failure is None else ""
        installed = ", ".join(self.names()) or "none"
        message = f"unknown {self.kind} plugin {name!r}."
        if failure:
            message += f" {failure}"
        return f"{message}{hint} Installed {self.kind} plugins: {installed}"

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            raise KeyError(self.unknown_message(name))
        return self._entries[name]

    def build(self, name: str, params: dict[str, Any] | BaseModel | None = None) -> Any:
        """Validate ``params`` against the component's params model and call its factory."""
        entry = self.get(name)
        if isinstance(params, entry.params_model):
            validated = params
        else:
            raw = params.model_dump() if isinstance(params, BaseModel) else dict(params or {})
            validated = entry.params_model.model_validate(raw)
        return entry.factory(validated)


class StrictParams(BaseModel):
    """Base class for plugin params models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def field_error(error_type: str, message: str, loc: tuple[Any, ...], value: Any) -> InitErrorDetails:
    """Build one pydantic error detail whose message is shown as written."""
    # The message goes through the context so that braces in it are not read as fields.
    return {"type": PydanticCustomError(error_type, "{message}", {"message": message}), "loc": loc, "input": value}


def nested_component_errors(
    registry: Registry,
    component: Mapping[str, Any],
    *,
    loc: tuple[Any, ...] = (),
    own_keys: Sequence[str] = ("plugin",),
) -> list[InitErrorDetails]:
    """Validate a nested ``{plugin: NAME, ...params}`` against NAME's params model.

    Plugins that wrap other components (a weighted loss, an ensemble reranker) use this
    in their own params validators, so nested mistakes are reported with their path
    (``loc`` prefixes every error) and a did-you-mean. ``own_keys`` are keys the wrapper
    reads itself (such as a weight), which are not passed to the nested params model.
    """
    name = component.get("plugin")
    if name is None:
        message = f"this component has no 'plugin' key; name a {registry.kind}, one of: {', '.join(registry.names())}"
        return [field_error("missing_plugin", message, (*loc, "plugin"), dict(component))]
    if not isinstance(name, str) or name not in registry:
        return [field_error("unknown_plugin", registry.unknown_message(str(name)), (*loc, "plugin"), name)]
    entry = registry.get(name)
    valid_keys = [*own_keys, *entry.params_model.model_fields]
    params = {key: value for key, value in component.items() if key not in own_keys}
    try:
        entry.params_model.model_validate(params)
    except ValidationError as error:
        details: list[InitErrorDetails] = []
        for item in error.errors():
            item_loc = (*loc, *item["loc"])
            if item["type"] == "extra_forbidden":
                key = str(item["loc"][-1])
                close = difflib.get_close_matches(key, valid_keys, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                message = f"unknown key {key!r} for {registry.kind} {name!r}.{hint} Valid keys: {', '.join(valid_keys)}"
                details.append(field_error("unknown_key", message, item_loc, item["input"]))
            else:
                details.append(field_error("invalid_param", item["msg"], item_loc, item["input"]))
        return details
    return []
