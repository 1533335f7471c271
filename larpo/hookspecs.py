"""Hook specifications for larpo plugins, sectioned by the phase of a round.

A plugin is a module (or object) with functions decorated by ``larpo.hookimpl``
whose names match the specs below. Distributions expose plugins through the
``larpo`` entry-point group::

    [project.entry-points.larpo]
    my-reranker = "my_package.plugin"

All hook arguments are keyword-only from the caller's point of view: pluggy
passes them by name, so an implementation may accept any subset of them. New
arguments are only ever added, never renamed or removed, so old plugins keep
working.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("larpo")

# ---------------------------------------------------------------------------
# Registration: called once, when the plugin manager loads plugins.
# ---------------------------------------------------------------------------


@hookspec
def larpo_register_retrievers(register: Any) -> None:
    """Register retriever (policy) components.

    Fires once when plugins load. Call ``register(name, factory, params_model,
    summary=...)`` for each retriever. ``factory(params)`` receives the
    validated instance of ``params_model`` (a pydantic model with
    ``extra="forbid"``) and returns an object implementing
    :class:`larpo.types.Retriever`. The return value is ignored.
    """


@hookspec
def larpo_register_rerankers(register: Any) -> None:
    """Register reranker (reward model) components.

    Fires once when plugins load. ``register`` has the same signature as in
    :func:`larpo_register_retrievers`; factories return a
    :class:`larpo.types.Reranker`. The return value is ignored.
    """


@hookspec
def larpo_register_miners(register: Any) -> None:
    """Register negative miners.

    Fires once when plugins load. Factories return a
    :class:`larpo.types.Miner`. The return value is ignored.
    """


@hookspec
def larpo_register_losses(register: Any) -> None:
    """Register preference losses.

    Fires once when plugins load. Factories return a
    :class:`larpo.losses.ListwiseLoss` (a ``torch.nn.Module``). The return
    value is ignored.
    """


@hookspec
def larpo_register_prompt_sources(register: Any) -> None:
    """Register prompt sources (train and held-out prompts).

    Fires once when plugins load. Factories return a
    :class:`larpo.types.PromptSource`. The return value is ignored.
    """


# ---------------------------------------------------------------------------
# Lifecycle: called by the engine during a run, on the main process only.
# Every implementation is called; return values are ignored.
# ---------------------------------------------------------------------------


@hookspec
def larpo_round_start(round_index: int, run_dir: str) -> None:
    """Fire before the sample phase of round ``round_index`` (1-based)."""


@hookspec
def larpo_after_sample(round_index: int, candidates: list[Any]) -> None:
    """Fire after sampling, with this round's new :class:`larpo.types.Candidate` list.

    Rewards are not set yet. Implementations must not mutate the candidates.
    """


@hookspec
def larpo_after_rerank(round_index: int, candidates: list[Any]) -> None:
    """Fire after reranking, with this round's candidates and their rewards set."""


@hookspec
def larpo_after_mine(round_index: int, lists: list[Any], report: dict[str, Any]) -> None:
    """Fire after mining, with the :class:`larpo.types.RankedList` objects and the mining report."""


@hookspec
def larpo_optimizer_step(round_index: int, step: int, metrics: dict[str, float]) -> None:
    """Fire after each optimiser step with that step's loss and diagnostics."""


@hookspec
def larpo_metrics(round_index: int, metrics: dict[str, Any]) -> None:
    """Fire when a round's metrics (round 0 is the untrained model) are final."""


@hookspec
def larpo_checkpoint(round_index: int, path: str) -> None:
    """Fire after the round's checkpoint is written (atomically) to ``path``."""


@hookspec
def larpo_round_end(round_index: int, metrics: dict[str, Any]) -> None:
    """Fire when every phase of the round is finished."""
