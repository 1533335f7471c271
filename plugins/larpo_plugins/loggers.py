"""Metric loggers ``jsonl``, ``tensorboard`` and (when installed) ``wandb``.

A spec lists loggers under ``loggers``. ``build_engine`` builds each one and registers
it with the plugin host. Its ``larpo_metrics`` implementation then receives one row per
round (round 0 included) and its ``larpo_optimizer_step`` implementation one row per
optimiser step, on the main process.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from larpo import hookimpl
from larpo.registry import StrictParams

TENSORBOARD_INSTALL = "pip install tensorboard==2.21.0"


def numeric_scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten nested dicts to ``a/b`` keys and keep numbers only (no bools, strings or lists)."""
    scalars: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            scalars.update(numeric_scalars(value, prefix=f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            scalars[name] = float(value)
    return scalars


class StepCounter:
    """Numbers optimiser steps across rounds, so step curves of later rounds follow earlier ones.

    NOTE: a resumed run starts counting at 1 again, so its step curves overlap the
    steps logged before the resume.
    """

    def __init__(self) -> None:
        self.total = 0

    def advance(self) -> int:
        self.total += 1
        return self.total


# -- jsonl ---------------------------------------------------------------------


class JsonlLoggerParams(StrictParams):
    path: str = Field(description="JSONL file that receives the rows; relative paths start at the working directory.")
    steps: bool = Field(True, description="Also write one row per optimiser step, not only one per round.")


class JsonlLogger:
    """Appends ``{"type": "round", ...}`` and ``{"type": "step", ...}`` rows to one JSONL file."""

    def __init__(self, params: JsonlLoggerParams) -> None:
        self.path = Path(params.path)
        self.steps = params.steps
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, sort_keys=True) + "\n")

    @hookimpl
    def larpo_metrics(self, round_index: int, metrics: dict[str, Any]) -> None:
        self._append({"type": "round", **metrics, "round": round_index})

    @hookimpl
    def larpo_optimizer_step(self, round_index: int, step: int, metrics: dict[str, float]) -> None:
        if self.steps:
            self._append({"type": "step", **metrics, "round": round_index, "step": step})


# -- tensorboard ---------------------------------------------------------------


class TensorBoardLoggerParams(StrictParams):
    log_dir: str = Field(description="Folder for the TensorBoard event files (SummaryWriter log_dir).")
    steps: bool = Field(True, description="Also log every optimiser step's loss and diagnostics.")


class TensorBoardLogger:
    """Writes round metrics (x axis: round) and step metrics (x axis: step across rounds) as scalars.

    Round rows go under their own keys (``eval/greedy_accuracy``); step rows go under
    ``step/`` (``step/loss``). Strings and lists, such as ``mine/hint`` and quantiles,
    are skipped.
    """

    def __init__(self, params: TensorBoardLoggerParams) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(
                "logger 'tensorboard' needs the tensorboard package, which is not installed. "
                f"Install it with `{TENSORBOARD_INSTALL}`, or remove the logger from the spec's loggers list."
            )
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=params.log_dir)
        self.steps = params.steps
        self.counter = StepCounter()

    @hookimpl
    def larpo_metrics(self, round_index: int, metrics: dict[str, Any]) -> None:
        for key, value in numeric_scalars(metrics).items():
            self.writer.add_scalar(key, value, global_step=round_index)
        self.writer.flush()

    @hookimpl
    def larpo_optimizer_step(self, round_index: int, step: int, metrics: dict[str, float]) -> None:
        if not self.steps:
            return
        global_step = self.counter.advance()
        for key, value in numeric_scalars(metrics).items():
            self.writer.add_scalar(f"step/{key}", value, global_step=global_step)


# -- wandb ---------------------------------------------------------------------


class WandbLoggerParams(StrictParams):
    project: str | None = Field(None, description="Weights & Biases project; None uses wandb's default.")
    name: str | None = Field(None, description="Run name shown in Weights & Biases.")
    mode: Literal["online", "offline", "disabled"] = Field("online", description="wandb.init mode.")
    steps: bool = Field(True, description="Also log every optimiser step's loss and diagnostics.")


class WandbLogger:
    """Logs round metrics with ``round`` and step metrics with ``step/`` keys to one wandb run.

    NOTE: wandb is not a larpo requirement and this logger has not been run in larpo's
    tests, which do not install wandb.
    """

    def __init__(self, params: WandbLoggerParams) -> None:
        import wandb

        self.run = wandb.init(project=params.project, name=params.name, mode=params.mode)
        self.steps = params.steps
        self.counter = StepCounter()

    @hookimpl
    def larpo_metrics(self, round_index: int, metrics: dict[str, Any]) -> None:
        self.run.log({**numeric_scalars(metrics), "round": round_index})

    @hookimpl
    def larpo_optimizer_step(self, round_index: int, step: int, metrics: dict[str, float]) -> None:
        if self.steps:
            scalars = {f"step/{key}": value for key, value in numeric_scalars(metrics).items()}
            self.run.log({**scalars, "step/global": self.counter.advance()})


@hookimpl
def larpo_register_loggers(register: Any) -> None:
    register(
        "jsonl",
        JsonlLogger,
        JsonlLoggerParams,
        summary="Appends every round's metrics row and every optimiser step's row to a JSONL file.",
    )
    register(
        "tensorboard",
        TensorBoardLogger,
        TensorBoardLoggerParams,
        summary="Writes round and step metrics as TensorBoard scalars (needs the tensorboard package).",
    )
    # wandb is registered only where it is installed. It is not in registry/plugins.json,
    # because the catalogue test requires each catalogued larpo component to be registered.
    if importlib.util.find_spec("wandb") is not None:
        register(
            "wandb",
            WandbLogger,
            WandbLoggerParams,
            summary="Logs round and step metrics to a Weights & Biases run.",
        )
