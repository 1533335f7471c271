"""Plugin loading through the ``larpo`` entry-point group and pluggy.

Environment variables:

- ``LARPO_PLUGINS=a,b``: load only these entry points (by entry-point name).
- ``LARPO_STRICT_PLUGINS=1``: any plugin that fails to import or register is fatal.
- ``LARPO_TRACE_PLUGINS=1``: log every hook call with its arguments and results.

A plugin that fails to import or register is skipped and recorded with its status
and error, so every other plugin keeps working. ``larpo plugins`` lists the failure,
and a spec that names one of its components fails validation with the same report.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import logging
import os
import reprlib
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
    "logger": "larpo_register_loggers",
}

# The catalogue of known plugins. It exists in a source checkout only: an installed
# wheel of larpo does not ship it, and then the catalogue is empty.
CATALOGUE_PATH = Path(__file__).resolve().parents[1] / "registry" / "plugins.json"

# Hook traces abbreviate long arguments (lists of candidates, metric dicts) so that one
# traced call stays one readable log line.
_TRACE_REPR = reprlib.Repr()
_TRACE_REPR.maxlist = 8
_TRACE_REPR.maxdict = 16
_TRACE_REPR.maxstring = 120
_TRACE_REPR.maxother = 120


class PluginError(RuntimeError):
    """A plugin failed to load or register while strict loading was requested."""


@dataclass
class PluginRecord:
    """Record of one loaded (or failed) plugin: its origin, status, hooks and components."""

    name: str
    distribution: str
    version: str
    entry_point: str
    status: str = "ok"
    error: str = ""
    hooks: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        """The plugin kinds of its registered components, in registry order."""
        found = {component.split(":", 1)[0] for component in self.components}
        return [kind for kind in KINDS if kind in found]

    def failure_summary(self) -> str:
        """Describe the failure in one sentence: the plugin, its distribution and the original error."""
        source = f"{self.distribution} {self.version}".strip()
        return f"plugin {self.name!r} from {source} {self.status}: {self.error}"


def env_flag(name: str) -> bool:
    """Return True when the environment variable ``name`` is set to 1, true, yes or on."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def allowed_entry_points() -> set[str] | None:
    """Return the entry-point names in ``LARPO_PLUGINS``, or None when every plugin may load."""
    raw = os.environ.get("LARPO_PLUGINS", "").strip()
    names = {name.strip() for name in raw.split(",") if name.strip()}
    return names or None


def load_catalogue(path: Path = CATALOGUE_PATH) -> list[dict[str, Any]]:
    """Read the known-plugin catalogue; return an empty list where the file is not present."""
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8"))["plugins"])


def _trace(message: str, *args: Any) -> None:
    logger.info("hook trace: " + message, *args)


def _trace_kwargs(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={_TRACE_REPR.repr(value)}" for key, value in kwargs.items())


class PluginHost:
    """The plugin manager plus one registry per kind."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("larpo")
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        for kind, kind_registry in self.registries.items():
            kind_registry.failure_note = self._failure_note_for(kind)
        self.records: dict[str, PluginRecord] = {}
        self.strict = env_flag("LARPO_STRICT_PLUGINS")
        self.trace = env_flag("LARPO_TRACE_PLUGINS")
        if self.trace:
            self.pm.add_hookcall_monitoring(self._trace_before, self._trace_after)

    # -- loading ------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Import every allowed entry point of the group and register its components."""
        allowed = allowed_entry_points()
        found: set[str] = set()
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            found.add(entry_point.name)
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
        self._check_allow_list(allowed, found)

    def _check_allow_list(self, allowed: set[str] | None, found: set[str]) -> None:
        missing = sorted((allowed or set()) - found)
        if not missing:
            return
        message = (
            f"LARPO_PLUGINS names entry points that are not installed: {', '.join(missing)}. "
            f"Installed entry points: {', '.join(sorted(found)) or 'none'}"
        )
        if self.strict:
            raise PluginError(message)
        logger.warning(message)

    def add_plugin(self, plugin: ModuleType | object, record: PluginRecord | None = None) -> None:
        """Register a plugin object (module or instance) and collect its components.

        A plugin can fail through an invalid or unknown hook, or through an error or a
        rejected registration inside a ``register_*`` hook. It is then unregistered
        again and its components are withdrawn, unless ``LARPO_STRICT_PLUGINS=1`` is
        set, in which case :class:`PluginError` is raised.
        """
        if record is None:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            record = PluginRecord(name=name, distribution="<python>", version="", entry_point=name)
        self.records[record.name] = record
        try:
            self.pm.register(plugin, name=record.name)
            self._reject_unknown_hooks(plugin, record)
        except Exception as error:
            self._fail(record, "register", error, plugin)
            return
        record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        for kind, hook_name in REGISTER_HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    self._call_register_hook(impl, kind, hook_name, record)
                except Exception as error:
                    self._fail(record, "register", error, plugin)
                    return

    def _reject_unknown_hooks(self, plugin: object, record: PluginRecord) -> None:
        """Raise when the plugin implements a hook that no spec in :mod:`larpo.hookspecs` defines.

        pluggy's ``check_pending`` finds the same cases but names the plugin by its repr,
        so this check runs first and names the plugin, the hook and the closest spec.
        """
        known = sorted(name for name in vars(hookspecs) if name.startswith("larpo_"))
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise pluggy.PluginValidationError(
                plugin,
                f"plugin {record.name!r} implements unknown hook {caller.name!r}.{hint} "
                "Hook implementations must be named after a spec in larpo.hookspecs "
                "(see docs/hooks.md).",
            )
        self.pm.check_pending()

    def _call_register_hook(self, impl: Any, kind: str, hook_name: str, record: PluginRecord) -> None:
        # register_* hooks are called per plugin, not through the hook relay, so that
        # each plugin gets a callback that records it as the owner of what it registers.
        callback = self._register_callback(kind, record)
        before = len(record.components)
        if self.trace:
            _trace("%s in plugin %r called with register=<callback for %s>", hook_name, record.name, kind)
        result = impl.function(register=callback)
        if self.trace:
            added = record.components[before:]
            _trace("%s in plugin %r returned %r and registered %s", hook_name, record.name, result, added)

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

    def _fail(self, record: PluginRecord, stage: str, error: BaseException, plugin: object | None = None) -> None:
        record.status = f"failed to {stage}"
        record.error = f"{type(error).__name__}: {error}"
        message = record.failure_summary()
        if self.strict:
            raise PluginError(message) from error
        logger.warning("%s (skipped; set LARPO_STRICT_PLUGINS=1 to make this fatal)", message)
        logger.debug("".join(traceback.format_exception(error)))

        # A half-loaded plugin is never used: its components are withdrawn and its
        # lifecycle hooks no longer fire.
        for component in record.components:
            kind, name = component.split(":", 1)
            self.registries[kind].remove(name)
        record.components.clear()
        if plugin is not None and self.pm.is_registered(plugin):
            self.pm.unregister(plugin)

    # -- failures -----------------------------------------------------------

    def failed_plugins(self) -> list[PluginRecord]:
        """Return the records of plugins that failed to import or register."""
        return [record for record in self.records.values() if record.status != "ok"]

    def failure_for(self, kind: str, name: str) -> PluginRecord | None:
        """Return the failed plugin that should have provided component ``name`` of ``kind``, if any.

        A failed plugin matches in three cases. The catalogue lists the component under
        its entry point. Its entry-point name equals the component name or contains it
        as a dash-separated part (``faiss`` in ``faiss-miner``). Its module path contains
        the component name with dashes as underscores.
        """
        failed = self.failed_plugins()
        if not failed:
            return None
        for item in load_catalogue():
            if item["kind"] != kind or item["name"] != name:
                continue
            entry_point_name = item["entry_point"].split("=", 1)[0].strip()
            for record in failed:
                if record.name == entry_point_name:
                    return record
        module_name = name.replace("-", "_")
        for record in failed:
            if record.name == name or name in record.name.split("-"):
                return record
            if module_name in record.entry_point.replace(":", ".").split("."):
                return record
        return None

    def _failure_note_for(self, kind: str) -> Callable[[str], str | None]:
        def note(name: str) -> str | None:
            record = self.failure_for(kind, name)
            if record is None:
                return None
            return (
                f"It would come from {record.failure_summary()}. Fix or reinstall that plugin, "
                "or uninstall it and choose another component."
            )

        return note

    # -- tracing ------------------------------------------------------------

    def _trace_before(self, hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        plugins = [self.pm.get_name(impl.plugin) for impl in hook_impls]
        _trace("%s(%s) calls %s", hook_name, _trace_kwargs(kwargs), plugins)

    def _trace_after(
        self,
        outcome: pluggy.Result[Any],
        hook_name: str,
        hook_impls: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, Any],
    ) -> None:
        if outcome.exception is not None:
            _trace("%s raised %s: %s", hook_name, type(outcome.exception).__name__, outcome.exception)
            return
        _trace("%s returned %s", hook_name, _TRACE_REPR.repr(outcome.get_result()))

    @property
    def hook(self) -> Any:
        """The pluggy hook relay: ``host.hook.larpo_round_start(round_index=1, run_dir=...)``."""
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
    "CATALOGUE_PATH",
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginHost",
    "PluginRecord",
    "RegistrationError",
    "get_host",
    "load_catalogue",
    "registry",
]
