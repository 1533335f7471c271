"""The round loop: sample, rerank, pool, mine, reference, optimise, evaluate, checkpoint.

Every phase writes its outputs atomically into ``RUN_DIR/round-NNN/`` and is marked
done in ``manifest.json``. A resumed run skips finished phases and reloads the last
checkpoint. Each phase seeds its own randomness from (seed, round, phase), so a
resumed phase replays exactly what the killed one would have done.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from pathlib import Path
from typing import Any

import torch

from larpo.atomic import append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from larpo.engine.checkpoint import load_checkpoint, save_checkpoint
from larpo.engine.context import RunContext
from larpo.engine.evaluate import run_evaluate
from larpo.engine.mine import log_report, run_mine
from larpo.engine.optimize import run_optimize
from larpo.engine.pool import build_pool, read_candidates
from larpo.engine.reference import load_reference, run_reference
from larpo.engine.rerank import run_rerank
from larpo.engine.sample import run_sample
from larpo.engine.summary import accuracy_change, format_summary
from larpo.losses import ListwiseLoss
from larpo.spec import EvaluationSpec, OptimizationSpec, ReferenceSpec, RoundsSpec
from larpo.types import Miner, PromptSplits, RankedList, Reranker, Retriever

logger = logging.getLogger("larpo")

VERSIONED = ("larpo", "torch", "transformers", "peft", "accelerate", "pluggy", "pydantic")


class RunDirError(RuntimeError):
    """The output directory holds another run, or a resumed run has no manifest."""


class Engine:
    """Iterative LarPO training from component objects; ``Engine.run()`` returns per-round metrics.

    Build one from Python without YAML::

        engine = Engine(retriever=..., reranker=..., miner=..., loss=..., prompts=splits,
                        run_dir="runs/demo", rounds=RoundsSpec(count=2))
        metrics = engine.run()
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
        self.ctx.accelerator = Accelerator(mixed_precision=precision)
        self.spec = spec or {}
        self.manifest_path = self.ctx.run_dir / "manifest.json"
        self.manifest: dict[str, Any] = {}
        self._prepared = False

    # -- set-up -----------------------------------------------------------------

    def _prepare_model(self) -> None:
        if self._prepared:
            return
        ctx = self.ctx
        torch.manual_seed(ctx.seed)  # LoRA's A matrices are drawn here
        lora = ctx.optimization.lora
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.target_modules,
                task_type="CAUSAL_LM",
            )
            ctx.retriever.model = get_peft_model(ctx.retriever.model, config)
        elif ctx.reference.mode == "initial":
            from larpo.atomic import save_tensors

            initial = ctx.run_dir / "initial-weights.safetensors"
            if not initial.exists():
                state = {k: v.detach().contiguous() for k, v in ctx.retriever.model.state_dict().items()}
                save_tensors(initial, _untie(state))
        self._prepared = True

    def _open_run_dir(self, resume: bool) -> None:
        ctx = self.ctx
        if resume:
            if not self.manifest_path.is_file():
                raise RunDirError(f"cannot resume: no manifest.json in {ctx.run_dir}. Start the run without --resume.")
            self.manifest = read_json(self.manifest_path)
            return
        if self.manifest_path.exists():
            raise RunDirError(
                f"{ctx.run_dir} already holds a run. Resume it with --resume, or choose a new "
                "output_dir (for example --set output_dir=runs/new)."
            )
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        versions: dict[str, str | None] = {}
        for name in VERSIONED:
            try:
                versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                versions[name] = None
        self.manifest = {
            "spec": self.spec,
            "seed": ctx.seed,
            "versions": versions,
            "phases": {},
            "status": "running",
        }
        write_json(self.manifest_path, self.manifest)
        write_jsonl(
            ctx.run_dir / "prompts.jsonl",
            (
                {**p.to_dict(), "split": split}
                for split, prompts in (("train", ctx.prompts.train), ("heldout", ctx.prompts.heldout))
                for p in prompts
            ),
        )

    def _done(self, round_index: int, phase: str) -> bool:
        return self.manifest["phases"].get(f"{round_index}/{phase}") == "done"

    def _mark(self, round_index: int, phase: str, seconds: float) -> None:
        self.manifest["phases"][f"{round_index}/{phase}"] = "done"
        self.manifest.setdefault("seconds", {})[f"{round_index}/{phase}"] = round(seconds, 3)
        write_json(self.manifest_path, self.manifest)

    # -- the loop -----------------------------------------------------------------

    def run(self, resume: bool = False) -> list[dict[str, Any]]:
        """Run (or resume) every round; return the per-round metrics, round 0 first."""
        ctx = self.ctx
        self._open_run_dir(resume)
        self._prepare_model()
        trained = [r for r in range(1, ctx.rounds.count + 1) if self._done(r, "optimize")]
        if trained:
            logger.info("resuming %s after round %d's optimise phase", ctx.run_dir, trained[-1])
            load_checkpoint(ctx, trained[-1])

        if not self._done(0, "evaluate"):
            started = time.perf_counter()
            metrics = run_evaluate(ctx, 0)
            self._finish_round_metrics(0, metrics, started)

        for round_index in range(1, ctx.rounds.count + 1):
            if self._done(round_index, "evaluate"):
                continue
            ctx.hook.larpo_round_start(round_index=round_index, run_dir=str(ctx.run_dir))
            train_metrics = self._train_round(round_index)
            started = time.perf_counter()
            metrics = run_evaluate(ctx, round_index)
            metrics.update(train_metrics)
            self._finish_round_metrics(round_index, metrics, started)
            ctx.hook.larpo_round_end(round_index=round_index, metrics=metrics)

        self.manifest["status"] = "finished"
        write_json(self.manifest_path, self.manifest)
        history = list(read_jsonl(ctx.run_dir / "metrics.jsonl"))
        if ctx.is_main_process:
            logger.info("run finished: %s\n%s", ctx.run_dir, format_summary(history))
            change = accuracy_change(history)
            if change:
                logger.info(change)
        return history

    def _finish_round_metrics(self, round_index: int, metrics: dict[str, Any], started: float) -> None:
        ctx = self.ctx
        self._mark(round_index, "evaluate", time.perf_counter() - started)
        metrics["seconds"] = {
            key.split("/", 1)[1]: value
            for key, value in self.manifest.get("seconds", {}).items()
            if key.startswith(f"{round_index}/")
        }
        write_json(ctx.round_dir(round_index) / "metrics.json", metrics)
        append_jsonl(ctx.run_dir / "metrics.jsonl", metrics)
        ctx.hook.larpo_metrics(round_index=round_index, metrics=metrics)
        accuracy = metrics.get("eval/greedy_accuracy")
        if accuracy is not None:
            logger.info("round %d: held-out greedy accuracy %.3f", round_index, accuracy)

    def _train_round(self, round_index: int) -> dict[str, Any]:
        """Run the training phases of one round (skipping finished ones); return their metrics."""
        ctx = self.ctx
        out = ctx.round_dir(round_index)
        if self._done(round_index, "optimize"):
            return read_json(out / "train_metrics.json")
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

        ref = None
        if ctx.uses_reference and lists:
            started = time.perf_counter()
            if not self._done(round_index, "reference"):
                run_reference(ctx, round_index, lists, by_id)
                self._mark(round_index, "reference", time.perf_counter() - started)
            ref = load_reference(ctx, round_index)

        started = time.perf_counter()
        train = run_optimize(ctx, round_index, lists, by_id, ref) if lists else {"train/steps": 0.0}
        path = save_checkpoint(ctx, round_index)
        metrics.update(train)
        write_json(out / "train_metrics.json", metrics)
        self._mark(round_index, "optimize", time.perf_counter() - started)
        ctx.hook.larpo_checkpoint(round_index=round_index, path=str(path))
        return metrics


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Clone tensors that share storage (tied embeddings), which safetensors refuses to save."""
    seen: dict[int, str] = {}
    out = {}
    for key, tensor in state.items():
        pointer = tensor.data_ptr()
        out[key] = tensor.clone() if pointer in seen else tensor
        seen.setdefault(pointer, key)
    return out
