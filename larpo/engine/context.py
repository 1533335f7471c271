"""State shared by the phases of a run: components, settings, run directory and hooks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from larpo.losses import ListwiseLoss
from larpo.spec import EvaluationSpec, OptimizationSpec, ReferenceSpec, RoundsSpec
from larpo.types import Miner, Prompt, PromptSplits, Reranker, Retriever

logger = logging.getLogger("larpo")

PHASES = ("sample", "rerank", "pool", "mine", "reference", "optimize", "evaluate")


class _NoHooks:
    """Stand-in hook relay when the engine runs without a plugin host."""

    def __getattr__(self, name: str) -> Any:
        return lambda **kwargs: []


@dataclass
class RunContext:
    retriever: Retriever
    reranker: Reranker
    miner: Miner
    loss: ListwiseLoss
    prompts: PromptSplits
    rounds: RoundsSpec
    optimization: OptimizationSpec
    reference: ReferenceSpec
    evaluation: EvaluationSpec
    run_dir: Path
    seed: int = 0
    hook: Any = field(default_factory=_NoHooks)
    accelerator: Any = None
    prompts_by_id: dict[str, Prompt] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.prompts_by_id = {p.id: p for p in [*self.prompts.train, *self.prompts.heldout]}

    def round_dir(self, round_index: int) -> Path:
        path = self.run_dir / f"round-{round_index:03d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def phase_seed(self, round_index: int, phase: str) -> int:
        """Return a seed that depends only on (run seed, round, phase), so resumed phases replay exactly."""
        offset = PHASES.index(phase) if phase in PHASES else len(PHASES)
        return self.seed * 100_003 + round_index * 101 + offset

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def process_index(self) -> int:
        return 0 if self.accelerator is None else int(self.accelerator.process_index)

    @property
    def num_processes(self) -> int:
        return 1 if self.accelerator is None else int(self.accelerator.num_processes)

    def wait_for_everyone(self) -> None:
        """Block until every process reaches this point (a no-op in a single process)."""
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    @property
    def uses_reference(self) -> bool:
        return self.reference.mode != "none" and self.loss.requires_reference
