"""The round loop: sample, rerank, pool, mine, reference, optimise, evaluate, checkpoint.

Every phase writes its outputs atomically into ``RUN_DIR/round-NNN/`` and is marked
done in ``manifest.json`` only after its outputs exist. A resumed run skips finished
phases, reruns an unfinished one from its start and reloads the last checkpoint. Each
phase seeds its own randomness from (seed, round, phase), so a resumed phase replays
exactly what the killed one would have done.

With several processes (``accelerate launch``) the main process alone runs sample,
rerank, pool, mine, reference and evaluate, and it alone writes files. The other
processes wait at a barrier and then read the files. All processes run the optimise
phase, each on its share of every step's lists (see :mod:`larpo.engine.optimize`).
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from pathlib import Path
from typing import Any

import torch

from larpo.atomic import read_json, read_jsonl, write_json, write_jsonl
from larpo.engine.checkpoint import load_checkpoint, save_checkpoint
from larpo.engine.context import RunContext
from larpo.engine.evaluate import run_evaluate
from larpo.engine.mine import log_report, run_mine
from larpo.engine.optimize import NonFiniteLossError, run_optimize
from larpo.engine.pool import build_pool, read_candidates
from larpo.engine.reference import load_reference, run_reference
from larpo.engine.rerank import run_rerank
from larpo.engine.sample import run_sample
from larpo.engine.setup import prepare_policy
from larpo.engine.summary import accuracy_change, format_summary
from larpo.losses import ListwiseLoss
from larpo.spec import EvaluationSpec, OptimizationSpec, ReferenceSpec, RoundsSpec
from larpo.types import Candidate, Miner, PromptSplits, RankedList, Reranker, Retriever

logger = logging.getLogger("larpo")

VERSIONED = ("larpo", "torch", "transformers", "peft", "accelerate", "pluggy", "pydantic")


class RunDirError(RuntimeError):
    """The output directory contains another run, or a resumed run has no manifest."""


class Engine:
    """Iterative LarPO training from component objects; ``Engine.run()`` returns per-round metrics.

    Build one from Python without YAML::

        engine = Engine(retriever=..., reranker=..., miner=..., loss=..., prompts=splits,
                        run_dir="runs/demo", rounds=RoundsSpec(count=2))
        metrics = engine.run()

    ``accelerator`` is an optional ``accelerate.Accelerator`` (for example one with a
    longer process-group timeout); by default the engine creates one with the spec's
    mixed precision.
    """

    def __init__(
        self,
        *,
        retriever: Retriever,
        reranker: Reranker,
        miner: Miner,
        loss: ListwiseLoss,
        prompts: PromptSplits,
        run_dir: str | Path,
        rounds: RoundsSpec | None = None,
        optimization: OptimizationSpec | None = None,
        reference: ReferenceSpec | None = None,
        evaluation: EvaluationSpec | None = None,
        seed: int = 0,
        hook: Any = None,
        spec: dict[str, Any] | None = None,
        accelerator: Any = None,
    ) -> None:
        from accelerate import Accelerator

        self.ctx = RunContext(
            retriever=retriever,
            reranker=reranker,
            miner=miner,
            loss=loss,
            prompts=prompts,
            rounds=rounds or RoundsSpec(),
            optimization=optimization or OptimizationSpec(),
            reference=reference or ReferenceSpec(),
            evaluation=evaluation or EvaluationSpec(),
            run_dir=Path(run_dir),
            seed=seed,
        )
        if hook is not None:
            self.ctx.hook = hook
        if self.ctx.reference.mode == "none" and loss.requires_reference:
            raise ValueError(
                f"reference.mode is 'none' but loss {type(loss).__name__} needs reference "
                "log-probabilities; use reference.mode 'round' or a reference-free loss"
            )
        precision = self.ctx.optimization.precision
        if accelerator is None:
            accelerator = Accelerator(mixed_precision=precision)
        elif accelerator.mixed_precision != precision:
            raise ValueError(
                f"the accelerator's mixed_precision is {accelerator.mixed_precision!r} but "
                f"optimization.precision is {precision!r}; create the Accelerator with mixed_precision={precision!r}"
            )
        # NOTE: the other processes wait at a barrier while the main process samples, scores
        # and evaluates, and that wait counts against the process group's timeout (30 minutes
        # for gloo in torch 2.13; NCCL has a separate default). For long main-only phases
        # pass an Accelerator built with InitProcessGroupKwargs(timeout=...).
        self.ctx.accelerator = accelerator
        self.spec = spec or {}
        self.manifest_path = self.ctx.run_dir / "manifest.json"
        self.manifest: dict[str, Any] = {}
        self._prepared = False

    # -- set-up -----------------------------------------------------------------

    def _prepare_model(self) -> None:
        if self._prepared:
            return
        prepare_policy(self.ctx)
        self.ctx.wait_for_everyone()
        self._prepared = True

    def _open_run_dir(self, resume: bool) -> None:
        ctx = self.ctx
        # Every process checks before any of them writes, so all raise the same error.
        exists = self.manifest_path.is_file()
        if resume and not exists:
            raise RunDirError(f"cannot resume: no manifest.json in {ctx.run_dir}. Start the run without --resume.")
        if not resume and exists:
            raise RunDirError(
                f"{ctx.run_dir} already contains a run. Resume it with --resume, or choose a new "
                "output_dir (for example --set output_dir=runs/new)."
            )
        ctx.wait_for_everyone()
        if resume:
            self.manifest = read_json(self.manifest_path)
            self.manifest["status"] = "running"
            self.manifest.pop("error", None)
            return
        if ctx.is_main_process:
            self._write_new_manifest()
        ctx.wait_for_everyone()
        self.manifest = read_json(self.manifest_path)

    def _write_new_manifest(self) -> None:
        ctx = self.ctx
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        versions: dict[str, str | None] = {}
        for name in VERSIONED:
            try:
                versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                versions[name] = None
        # prompts.jsonl comes first: a run directory with a manifest always has it.
        write_jsonl(
            ctx.run_dir / "prompts.jsonl",
            (
                {**p.to_dict(), "split": split}
                for split, prompts in (("train", ctx.prompts.train), ("heldout", ctx.prompts.heldout))
                for p in prompts
            ),
        )
        manifest = {
            "spec": self.spec,
            "seed": ctx.seed,
            "versions": versions,
            "processes": ctx.num_processes,
            "phases": {},
            "status": "running",
        }
        write_json(self.manifest_path, manifest)

    def _done(self, round_index: int, phase: str) -> bool:
        return self.manifest["phases"].get(f"{round_index}/{phase}") == "done"

    def _mark(self, round_index: int, phase: str, seconds: float) -> None:
        """Record a finished phase in every process's copy of the manifest; the main process writes it."""
        self.manifest["phases"][f"{round_index}/{phase}"] = "done"
        self.manifest.setdefault("seconds", {})[f"{round_index}/{phase}"] = round(seconds, 3)
        if self.ctx.is_main_process:
            write_json(self.manifest_path, self.manifest)

    # -- the loop -----------------------------------------------------------------

    def run(self, resume: bool = False) -> list[dict[str, Any]]:
        """Run (or resume) every round; return the per-round metrics, round 0 first.

        Raises :class:`NonFiniteLossError` when a loss or gradient becomes NaN or inf: the
        manifest's status becomes ``failed`` and the last good checkpoint stays in place.
        """
        ctx = self.ctx
        self._open_run_dir(resume)
        self._prepare_model()
        try:
            self._run_rounds()
        except NonFiniteLossError as error:
            self.manifest["status"] = "failed"
            self.manifest["error"] = str(error)
            if ctx.is_main_process:
                write_json(self.manifest_path, self.manifest)
            raise

        self.manifest["status"] = "finished"
        if ctx.is_main_process:
            write_json(self.manifest_path, self.manifest)
        ctx.wait_for_everyone()
        history = list(read_jsonl(ctx.run_dir / "metrics.jsonl"))
        if ctx.is_main_process:
            logger.info("run finished: %s\n%s", ctx.run_dir, format_summary(history))
            change = accuracy_change(history)
            if change:
                logger.info(change)
        return history

    def _run_rounds(self) -> None:
        ctx = self.ctx
        main = ctx.is_main_process
        trained = [r for r in range(1, ctx.rounds.count + 1) if self._done(r, "optimize")]
        if trained:
            if main:
                logger.info("resuming %s after round %d's optimise phase", ctx.run_dir, trained[-1])
            load_checkpoint(ctx, trained[-1])

        if not self._done(0, "evaluate"):
            self._evaluate(0, {})

        for round_index in range(1, ctx.rounds.count + 1):
            if self._done(round_index, "evaluate"):
                continue
            if main:
                ctx.hook.larpo_round_start(round_index=round_index, run_dir=str(ctx.run_dir))
            train_metrics = self._train_round(round_index)
            metrics = self._evaluate(round_index, train_metrics)
            if main:
                ctx.hook.larpo_round_end(round_index=round_index, metrics=metrics)

    def _evaluate(self, round_index: int, train_metrics: dict[str, Any]) -> dict[str, Any]:
        """Run the evaluate phase on the main process; return the round's metrics row there."""
        ctx = self.ctx
        metrics: dict[str, Any] = {}
        started = time.perf_counter()
        if ctx.is_main_process:
            metrics = run_evaluate(ctx, round_index)
            metrics.update(train_metrics)
            self._write_round_metrics(round_index, metrics, time.perf_counter() - started)
        self._mark(round_index, "evaluate", time.perf_counter() - started)
        if ctx.is_main_process:
            ctx.hook.larpo_metrics(round_index=round_index, metrics=metrics)
            accuracy = metrics.get("eval/greedy_accuracy")
            if accuracy is not None:
                logger.info("round %d: held-out greedy accuracy %.3f", round_index, accuracy)
        ctx.wait_for_everyone()
        return metrics

    def _write_round_metrics(self, round_index: int, metrics: dict[str, Any], evaluate_seconds: float) -> None:
        """Write ``metrics.json`` and rebuild ``metrics.jsonl`` from every finished round's file.

        Rebuilding, rather than appending, keeps one row per round when a killed
        evaluate phase is run again.
        """
        ctx = self.ctx
        seconds = {
            key.split("/", 1)[1]: value
            for key, value in self.manifest.get("seconds", {}).items()
            if key.startswith(f"{round_index}/")
        }
        seconds["evaluate"] = round(evaluate_seconds, 3)
        metrics["seconds"] = seconds
        write_json(ctx.round_dir(round_index) / "metrics.json", metrics)
        rows = [read_json(ctx.round_dir(r) / "metrics.json") for r in range(round_index + 1)]
        write_jsonl(ctx.run_dir / "metrics.jsonl", rows)

    def _train_round(self, round_index: int) -> dict[str, Any]:
        """Run the training phases of one round (skipping finished ones); return their metrics.

        On the main process the metrics are complete; on the others they are empty.
        """
        ctx = self.ctx
        out = ctx.round_dir(round_index)
        if self._done(round_index, "optimize"):
            return read_json(out / "train_metrics.json") if ctx.is_main_process else {}
        metrics: dict[str, Any] = {}
        if ctx.is_main_process:
            metrics = self._prepare_lists(round_index)
        ctx.wait_for_everyone()
        lists, by_id, ref = self._read_lists(round_index)

        started = time.perf_counter()
        train = run_optimize(ctx, round_index, lists, by_id, ref) if lists else {"train/steps": 0.0}
        path = None
        if ctx.is_main_process:
            path = save_checkpoint(ctx, round_index)
            metrics.update(train)
            write_json(out / "train_metrics.json", metrics)
        self._mark(round_index, "optimize", time.perf_counter() - started)
        if path is not None:
            ctx.hook.larpo_checkpoint(round_index=round_index, path=str(path))
        ctx.wait_for_everyone()
        return metrics

    def _prepare_lists(self, round_index: int) -> dict[str, Any]:
        """Run sample, rerank, pool, mine and reference (main process only); return their metrics."""
        ctx = self.ctx
        out = ctx.round_dir(round_index)
        metrics: dict[str, Any] = {"temperature": ctx.rounds.temperature_at(round_index)}

        started = time.perf_counter()
        if not self._done(round_index, "sample"):
            candidates = run_sample(ctx, round_index)
            write_jsonl(out / "candidates.jsonl", (c.to_dict() for c in candidates))
            ctx.hook.larpo_after_sample(round_index=round_index, candidates=candidates)
            self._mark(round_index, "sample", time.perf_counter() - started)

        started = time.perf_counter()
        if not self._done(round_index, "rerank"):
            candidates = list(read_candidates(ctx, round_index))
            statuses = run_rerank(ctx, candidates, desc=f"round {round_index} rerank")
            write_jsonl(out / "candidates.jsonl", (c.to_dict() for c in candidates))
            write_json(out / "rerank.json", dict(statuses))
            ctx.hook.larpo_after_rerank(round_index=round_index, candidates=candidates)
            self._mark(round_index, "rerank", time.perf_counter() - started)
        metrics.update({f"rerank/{k}": v for k, v in read_json(out / "rerank.json").items()})
        this_round = list(read_candidates(ctx, round_index))
        metrics["sample/mean_reward"] = sum(float(c.reward or 0.0) for c in this_round) / max(len(this_round), 1)
        metrics["sample/mean_length"] = sum(c.num_tokens for c in this_round) / max(len(this_round), 1)

        started = time.perf_counter()
        pools = build_pool(ctx, round_index)
        by_id = {c.id: c for pool in pools.values() for c in pool}
        metrics["pool/candidates"] = len(by_id)
        if not self._done(round_index, "pool"):
            self._mark(round_index, "pool", time.perf_counter() - started)

        started = time.perf_counter()
        if not self._done(round_index, "mine"):
            result = run_mine(ctx, pools)
            write_jsonl(out / "lists.jsonl", (r.to_dict() for r in result.lists))
            write_json(out / "mining.json", result.report)
            log_report(round_index, result.report)
            ctx.hook.larpo_after_mine(round_index=round_index, lists=result.lists, report=result.report)
            self._mark(round_index, "mine", time.perf_counter() - started)
        lists = [RankedList.from_dict(row) for row in read_jsonl(out / "lists.jsonl")]
        metrics.update({f"mine/{k}": v for k, v in read_json(out / "mining.json").items()})

        if ctx.uses_reference and lists:
            started = time.perf_counter()
            if not self._done(round_index, "reference"):
                run_reference(ctx, round_index, lists, by_id)
                self._mark(round_index, "reference", time.perf_counter() - started)
        return metrics

    def _read_lists(self, round_index: int) -> tuple[list[RankedList], dict[str, Candidate], torch.Tensor | None]:
        """Read the round's lists, the pool's candidates and the reference log-probs from disk."""
        ctx = self.ctx
        out = ctx.round_dir(round_index)
        lists = [RankedList.from_dict(row) for row in read_jsonl(out / "lists.jsonl")]
        pools = build_pool(ctx, round_index)
        by_id = {c.id: c for pool in pools.values() for c in pool}
        ref = load_reference(ctx, round_index) if ctx.uses_reference and lists else None
        return lists, by_id, ref
