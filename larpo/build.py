"""Build an :class:`~larpo.engine.Engine` from a validated spec through the plugin registries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from larpo.engine import Engine
from larpo.plugins import PluginHost, get_host
from larpo.spec import COMPONENT_FIELDS, Spec


def build_component(host: PluginHost, field_name: str, spec: Spec) -> Any:
    component = getattr(spec, field_name)
    return host.registries[COMPONENT_FIELDS[field_name]].build(component.plugin, component.params())


def build_engine(spec: Spec, host: PluginHost | None = None, output_dir: str | None = None) -> Engine:
    """Instantiate every component (loading weights) and return a ready engine."""
    host = host or get_host()
    prompts = build_component(host, "data", spec).load()
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
