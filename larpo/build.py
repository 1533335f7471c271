"""Build an :class:`~larpo.engine.Engine` from a validated spec through the plugin registries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from larpo.engine import Engine
from larpo.plugins import PluginHost, get_host
from larpo.spec import COMPONENT_FIELDS, COMPONENT_LIST_FIELDS, Spec


def build_component(host: PluginHost, field_name: str, spec: Spec) -> Any:
    component = getattr(spec, field_name)
    return host.registries[COMPONENT_FIELDS[field_name]].build(component.plugin, component.params())


def build_loggers(host: PluginHost, spec: Spec) -> list[Any]:
    """Build the spec's loggers and register them with the host's plugin manager.

    Their lifecycle hook implementations then fire through ``host.hook``. The loggers of
    the previous ``build_loggers`` call on the same host are unregistered first.

    NOTE: only the most recently built engine of a host has loggers. Build and run
    engines that use loggers one at a time.
    """
    for previous in getattr(host, "built_loggers", []):
        if host.pm.is_registered(previous):
            host.pm.unregister(previous)
    registry = host.registries[COMPONENT_LIST_FIELDS["loggers"]]
    loggers = [registry.build(item.plugin, item.params()) for item in spec.loggers]
    for index, logger in enumerate(loggers):
        host.pm.register(logger, name=f"logger {index}: {spec.loggers[index].plugin} ({id(logger):x})")
    # Raises pluggy.PluginValidationError when a logger implements a hook that no spec defines.
    host.pm.check_pending()
    host.built_loggers = loggers  # type: ignore[attr-defined]
    return loggers


def build_engine(spec: Spec, host: PluginHost | None = None, output_dir: str | None = None) -> Engine:
    """Instantiate every component (loading weights) and return a ready engine."""
    host = host or get_host()
    prompts = build_component(host, "data", spec).load()
    build_loggers(host, spec)
    return Engine(
        retriever=build_component(host, "retriever", spec),
        reranker=build_component(host, "reranker", spec),
        miner=build_component(host, "miner", spec),
        loss=build_component(host, "loss", spec),
        prompts=prompts,
        run_dir=Path(output_dir or spec.output_dir),
        rounds=spec.rounds,
        optimization=spec.optimization,
        reference=spec.reference,
        evaluation=spec.evaluation,
        seed=spec.seed,
        hook=host.hook,
        spec=spec.model_dump(mode="json"),
    )
