"""Hook specifications for larpo plugins, sectioned by the phase of a round.

A plugin is a module (or object) with functions decorated by ``larpo.hookimpl``
whose names match the specs below. Distributions expose plugins through the
``larpo`` entry-point group::

    [project.entry-points.larpo]
    my-reranker = "my_package.plugin"

pluggy passes hook arguments by keyword, so an implementation may accept any subset
of a spec's arguments, in any order. New arguments are only ever added, never renamed
or removed, so old plugins keep working. An implementation whose name matches no spec
is rejected when the plugin loads.

No hook here is ``firstresult``: pluggy calls every implementation (newest plugin
first) and collects their non-None results in a list, and larpo ignores that list.
An exception raised by an implementation propagates to the caller: while plugins load
it marks the plugin as failed, and during a run it stops the run.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("larpo")

# ---------------------------------------------------------------------------
# Registration: called once per plugin, while the plugin host loads plugins.
#
# Each register_* implementation receives ``register``, a callback owned by its
# plugin:
#
#     register(name, factory, params_model, *, summary="")
#
# - ``name``: the component name that specs use (``{plugin: name}``); unique per kind.
# - ``factory``: called as ``factory(params)`` with a validated ``params_model``
#   instance when an engine is built; returns the component.
# - ``params_model``: a pydantic model with ``model_config = ConfigDict(extra="forbid")``
#   (``larpo.registry.StrictParams``); ``larpo validate`` and ``larpo schema`` use it.
# - ``summary``: one line for ``larpo plugins`` and the catalogue.
#
# ``register`` raises ``larpo.registry.RegistrationError`` for a duplicate name, naming
# both owning plugins and distributions, and for an invalid factory or params model.
# The host then marks the plugin as failed and withdraws what it registered. Each accepted
# component records the plugin's entry-point name, distribution and version.
# ---------------------------------------------------------------------------


@hookspec
def larpo_register_retrievers(register: Any) -> None:
    """Register retriever (policy) components.

    Fires once per plugin when plugins load, before any spec is validated.

    :param register: the callback described above; factories return an object that
        implements :class:`larpo.types.Retriever`.
    :return: ignored; register components through ``register``.
    """


@hookspec
def larpo_register_rerankers(register: Any) -> None:
    """Register reranker (reward model) components.

    Fires once per plugin when plugins load, before any spec is validated.

    :param register: the callback described above; factories return an object that
        implements :class:`larpo.types.Reranker`.
    :return: ignored; register components through ``register``.
    """


@hookspec
def larpo_register_miners(register: Any) -> None:
    """Register negative miners.

    Fires once per plugin when plugins load, before any spec is validated.

    :param register: the callback described above; factories return an object that
        implements :class:`larpo.types.Miner`.
    :return: ignored; register components through ``register``.
    """


@hookspec
def larpo_register_losses(register: Any) -> None:
    """Register preference losses.

    Fires once per plugin when plugins load, before any spec is validated.

    :param register: the callback described above; factories return a
        :class:`larpo.losses.ListwiseLoss` (a ``torch.nn.Module``).
    :return: ignored; register components through ``register``.
    """


@hookspec
def larpo_register_prompt_sources(register: Any) -> None:
    """Register prompt sources (train and held-out prompts).

    Fires once per plugin when plugins load, before any spec is validated.

    :param register: the callback described above; factories return an object that
        implements :class:`larpo.types.PromptSource`.
    :return: ignored; register components through ``register``.
    """


@hookspec
def larpo_register_loggers(register: Any) -> None:
    """Register metric loggers, which specs list under ``loggers``.

    Fires once per plugin when plugins load, before any spec is validated.

    :param register: the callback described above; factories return a plugin object
        whose lifecycle hook implementations (for example :func:`larpo_metrics` and
        :func:`larpo_optimizer_step`) receive the run's metrics. ``build_engine``
        registers each built logger with the plugin host, so those hooks fire.
    :return: ignored; register components through ``register``.
    """


# ---------------------------------------------------------------------------
# Lifecycle: called by the engine during a run, in the order below, through the
# hook relay of the engine's ``hook`` argument (``build_engine`` passes the plugin
# host's). Every implementation is called and return values are ignored. Arguments
# are the engine's own objects: implementations must treat them as read-only.
# A resumed run does not fire the hooks of phases that finished before the resume.
# With several processes (accelerate launch) the hooks fire on the main process only.
# ---------------------------------------------------------------------------


@hookspec
def larpo_round_start(round_index: int, run_dir: str) -> None:
    """Fire before the sample phase of a training round.

    :param round_index: the round about to start, 1-based (round 0 is the evaluation
        of the untrained model and has no round start).
    :param run_dir: the run's output directory.
    :return: ignored.
    """


@hookspec
def larpo_after_sample(round_index: int, candidates: list[Any]) -> None:
    """Fire after the sample phase wrote ``candidates.jsonl``.

    :param round_index: the current round, 1-based.
    :param candidates: this round's new :class:`larpo.types.Candidate` objects; their
        rewards are not set yet.
    :return: ignored.
    """


@hookspec
def larpo_after_rerank(round_index: int, candidates: list[Any]) -> None:
    """Fire after the rerank phase scored this round's candidates.

    :param round_index: the current round, 1-based.
    :param candidates: this round's :class:`larpo.types.Candidate` objects with
        ``reward`` and ``status`` set.
    :return: ignored.
    """


@hookspec
def larpo_after_mine(round_index: int, lists: list[Any], report: dict[str, Any]) -> None:
    """Fire after the mine phase built the round's training lists.

    :param round_index: the current round, 1-based.
    :param lists: the :class:`larpo.types.RankedList` objects, best candidate first.
    :param report: the miner's report (``lists``, ``dropped/*``, ``removed/*`` counts
        and an optional ``hint``), as written to ``mining.json``.
    :return: ignored.
    """


@hookspec
def larpo_optimizer_step(round_index: int, step: int, metrics: dict[str, float]) -> None:
    """Fire after each optimiser step of the optimise phase.

    :param round_index: the current round, 1-based.
    :param step: the step number within this round, 1-based.
    :param metrics: that step's loss and diagnostics (``loss``, ``epoch``, ``step``,
        ``round`` and the loss's own keys), as appended to the round's step log.
    :return: ignored.
    """


@hookspec
def larpo_checkpoint(round_index: int, path: str) -> None:
    """Fire after the round's checkpoint was written (atomically).

    :param round_index: the current round, 1-based.
    :param path: the checkpoint folder, in Hugging Face format.
    :return: ignored.
    """


@hookspec
def larpo_metrics(round_index: int, metrics: dict[str, Any]) -> None:
    """Fire when a round's metrics are final and appended to ``metrics.jsonl``.

    Fires for round 0 (the untrained model) too, so a metrics logger receives every row.

    :param round_index: the round, 0-based.
    :param metrics: the round's row: ``eval/*`` held-out metrics and, for training
        rounds, ``sample/*``, ``rerank/*``, ``mine/*`` and ``train/*`` metrics.
    :return: ignored.
    """


@hookspec
def larpo_round_end(round_index: int, metrics: dict[str, Any]) -> None:
    """Fire when every phase of a training round is finished, after :func:`larpo_metrics`.

    :param round_index: the finished round, 1-based.
    :param metrics: the same row that :func:`larpo_metrics` received.
    :return: ignored.
    """
