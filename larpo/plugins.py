"""Plugin loading through the ``larpo`` entry-point group and pluggy.

Environment variables:

- ``LARPO_PLUGINS=a,b``: load only these entry points (by entry-point name).
- ``LARPO_STRICT_PLUGINS=1``: any plugin that fails to import or register is fatal.
- ``LARPO_TRACE_PLUGINS=1``: log every hook call with its arguments and results.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from larpo import hookspecs
from larpo.registry import KINDS, RegistrationError, Registry

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "larpo"

REGISTER_HOOKS = {
    "retriever": "larpo_register_retrievers",
    "reranker": "larpo_register_rerankers",
    "miner": "larpo_register_miners",
    "loss": "larpo_register_losses",
    "prompts": "larpo_register_prompt_sources",
}


class PluginError(RuntimeError):
    """A plugin failed to load or register while strict loading was requested."""


@dataclass
class PluginRecord:
    """What larpo knows about one loaded (or failed) plugin."""

    name: str
    distribution: str
    version: str
    entry_point: str
    status: str = "ok"
    error: str = ""
    hooks: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class PluginHost:
    """The plugin manager plus one registry per kind."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("larpo")
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        self.records: dict[str, PluginRecord] = {}
        self.strict = _env_flag("LARPO_STRICT_PLUGINS")
        if _env_flag("LARPO_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda message: logger.info("hook trace: %s", message.rstrip()))
            self.pm.enable_tracing()

    # -- loading ------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Import every allowed entry point of the group and register its components."""
        allowed_raw = os.environ.get("LARPO_PLUGINS", "").strip()
        allowed = {name.strip() for name in allowed_raw.split(",") if name.strip()} or None
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and entry_point.name not in allowed:
                continue
            dist = entry_point.dist
            record = PluginRecord(
                name=entry_point.name,
                distribution=dist.name if dist else "<unknown>",
                version=dist.version if dist else "",
                entry_point=entry_point.value,
            )
            self.records[record.name] = record
            try:
                module = entry_point.load()
            except Exception as error:  # a broken plugin must not take the host down
                self._fail(record, "import", error)
                continue
            self.add_plugin(module, record)

    def add_plugin(self, plugin: ModuleType | object, record: PluginRecord | None = None) -> None:
        """Register a plugin object (module or instance) and collect its components."""
        if record is None:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            record = PluginRecord(name=name, distribution="<python>", version="", entry_point=name)
            self.records[record.name] = record
        try:
            self.pm.register(plugin, name=record.name)
            self.pm.check_pending()
        except Exception as error:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(record, "register", error)
            return
        record.hooks = sorted(
            caller.name for caller in self.pm.get_hookcallers(plugin) or []
        )
        for kind, hook_name in REGISTER_HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    impl.function(register=self._register_callback(kind, record))
                except Exception as error:
                    self._fail(record, "register", error)
                    return

    def _register_callback(self, kind: str, record: PluginRecord) -> Callable[..., None]:
        registry = self.registries[kind]

        def register(name: str, factory: Callable[[Any], Any], params_model: Any, *, summary: str = "") -> None:
            registry.add(
                name,
                factory,
                params_model,
                summary=summary,
                plugin=record.name,
                distribution=record.distribution,
                version=record.version,
            )
            record.components.append(f"{kind}:{name}")

        return register

    def _fail(self, record: PluginRecord, stage: str, error: BaseException) -> None:
        record.status = f"failed to {stage}"
        record.error = f"{type(error).__name__}: {error}"
        message = (
            f"plugin {record.name!r} from {record.distribution} {record.version} failed to "
            f"{stage}: {record.error}"
        )
        if self.strict:
            raise PluginError(message) from error
        logger.warning("%s (skipped; set LARPO_STRICT_PLUGINS=1 to make this fatal)", message)
        logger.debug("".join(traceback.format_exception(error)))
        # Components registered before the failure are withdrawn, so a half-loaded plugin
        # is never used.
        for component in record.components:
            kind, name = component.split(":", 1)
            self.registries[kind]._entries.pop(name, None)
        record.components.clear()

    def failed_plugins(self) -> list[PluginRecord]:
        return [record for record in self.records.values() if record.status != "ok"]

    def failure_for(self, kind: str, name: str) -> PluginRecord | None:
        """Return the failed plugin whose entry-point name matches a missing component, if any."""
        for record in self.failed_plugins():
            if record.name == name or name in record.entry_point:
                return record
        return None

    @property
    def hook(self) -> Any:
        return self.pm.hook


_HOST: PluginHost | None = None


def get_host(reload: bool = False) -> PluginHost:
    """Return the process-wide plugin host, loading entry points on first use."""
    global _HOST
    if _HOST is None or reload:
        host = PluginHost()
        host.load_entry_points()
        _HOST = host
    return _HOST


def registry(kind: str) -> Registry:
    """Return the registry of one plugin kind from the process-wide host."""
    return get_host().registries[kind]


__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginHost",
    "PluginRecord",
    "RegistrationError",
    "get_host",
    "registry",
]
