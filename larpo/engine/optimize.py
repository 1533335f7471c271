"""Optimise phase: the loss plugin over ``[B, K]`` list scores, AdamW, accelerate.

The batch is counted in responses. A step packs whole lists up to ``batch_size``
responses and splits them into micro-batches of at most ``micro_batch_size``
responses. Each micro-batch's loss is the sum of its per-list losses divided by the
number of lists in the whole step, so the accumulated gradient equals that of one
un-split batch.

With several processes every rank builds the same step plan, takes the lists at
positions ``rank, rank + W, ...`` of each step and runs its forward passes through a
DistributedDataParallel wrapper. DDP averages gradients over the W ranks, so each
rank scales its loss by W: the averaged gradient is then the sum over all the step's
lists divided by their number, the gradient of one process running the whole step.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from larpo.atomic import append_jsonl
from larpo.engine.context import RunContext
from larpo.types import Candidate, Prompt, RankedList

logger = logging.getLogger("larpo")


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN or inf; the round stops and the last good checkpoint stays."""


def pack(indices: Sequence[int], sizes: Sequence[int], limit: int) -> list[list[int]]:
    """Group list indices, in order, into groups of at most ``limit`` responses (at least one list each)."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index in indices:
        if current and used + sizes[index] > limit:
            groups.append(current)
            current, used = [], 0
        current.append(index)
        used += sizes[index]
    if current:
        groups.append(current)
    return groups


def plan_epoch(sizes: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffle the lists and pack them into optimiser steps."""
    order = torch.randperm(len(sizes), generator=generator).tolist()
    return pack(order, sizes, batch_size)


def micro_batch_inputs(
    ctx: RunContext,
    lists: Sequence[RankedList],
    rows: Sequence[int],
    by_id: Mapping[str, Candidate],
    ref: torch.Tensor | None,
) -> dict[str, Any]:
    """Score a micro-batch with the policy and collate ``[b, K]`` loss inputs."""
    width = max(len(lists[row].candidate_ids) for row in rows)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    rewards = torch.zeros(len(rows), width)
    lengths = torch.zeros(len(rows), width, dtype=torch.long)
    items: list[Candidate] = []
    prompts: list[Prompt] = []
    for i, row in enumerate(rows):
        ranked = lists[row]
        count = len(ranked.candidate_ids)
        mask[i, :count] = True
        rewards[i, :count] = torch.tensor(ranked.rewards)
        for k, cid in enumerate(ranked.candidate_ids):
            # Every item is scored as a response to the list's prompt, so a cross-prompt
            # negative (a response to another prompt) is contrasted under this query.
            items.append(by_id[cid])
            prompts.append(ctx.prompts_by_id[ranked.prompt_id])
            lengths[i, k] = by_id[cid].num_tokens

    device = ctx.retriever.device if hasattr(ctx.retriever, "device") else torch.device("cpu")
    flat = ctx.retriever.sequence_logps(prompts, [c.token_ids for c in items])  # (N,)
    mask = mask.to(device)
    policy_logps = torch.zeros(mask.shape, dtype=flat.dtype, device=device)
    policy_logps = policy_logps.masked_scatter(mask, flat)  # (b, K), zeros in padded slots
    inputs: dict[str, Any] = {
        "policy_logps": policy_logps,
        "mask": mask,
        "rewards": rewards.to(device=device, dtype=flat.dtype),
        "lengths": lengths.to(device),
    }
    if ref is not None:
        ref_rows = ref[list(rows), :width]
        inputs["ref_logps"] = ref_rows.to(device=device, dtype=flat.dtype).masked_fill(~mask, 0.0)
    return inputs


DDP_TYPES = {"MULTI_CPU", "MULTI_GPU", "MULTI_NPU", "MULTI_MLU", "MULTI_SDAA", "MULTI_MUSA", "MULTI_XPU", "MULTI_HPU"}


def wrap_for_training(ctx: RunContext) -> torch.nn.Module:
    """Return the policy wrapped in DistributedDataParallel, or the policy itself in one process.

    The wrapper is built here rather than by ``accelerator.prepare`` because prepare
    also patches the model's ``forward`` with autocast for good, which would change
    generation and scoring outside the optimise phase.
    """
    accelerator = ctx.accelerator
    model = ctx.retriever.model
    if accelerator is None or accelerator.num_processes == 1:
        return model
    kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type))
    if kind not in DDP_TYPES:
        raise NotImplementedError(
            f"accelerate distributed type {kind} is not supported: the engine trains with plain "
            "data parallelism (DDP) and generates on the main process with the full model. "
            "Launch with a multi-GPU or multi-CPU accelerate config instead."
        )
    device_ids = [accelerator.device.index] if accelerator.device.type == "cuda" else None
    # The model's buffers (rotary frequencies) never change, and ranks may run different
    # numbers of forward passes per step, so buffers are not synchronised on each forward.
    # torch 2.13 deprecates broadcast_buffers in favour of forward_sync_buffers.
    ddp = torch.nn.parallel.DistributedDataParallel
    if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters:
        return ddp(model, device_ids=device_ids, forward_sync_buffers=False)
    return ddp(model, device_ids=device_ids, broadcast_buffers=False)


@contextmanager
def training_model(ctx: RunContext) -> Iterator[torch.nn.Module]:
    """Point the retriever at the DDP-wrapped policy for the training forward passes."""
    model = ctx.retriever.model
    wrapped = wrap_for_training(ctx)
    ctx.retriever.model = wrapped
    try:
        yield wrapped
    finally:
        ctx.retriever.model = model


def run_optimize(
    ctx: RunContext,
    round_index: int,
    lists: Sequence[RankedList],
    by_id: Mapping[str, Candidate],
    ref: torch.Tensor | None,
) -> dict[str, float]:
    """Train for ``optimization.epochs`` passes over the round's lists; return a summary.

    Every process calls this with the same lists. The step log is written and the
    ``larpo_optimizer_step`` hook fires on the main process only.
    """
    settings = ctx.optimization
    model = ctx.retriever.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    sizes = [len(r.candidate_ids) for r in lists]
    seed = ctx.phase_seed(round_index, "optimize")
    generator = torch.Generator().manual_seed(seed)
    plans = [plan_epoch(sizes, settings.batch_size, generator) for _ in range(settings.epochs)]
    total_steps = sum(len(plan) for plan in plans)
    log_path = ctx.round_dir(round_index) / "train_log.jsonl"
    if ctx.is_main_process:
        log_path.unlink(missing_ok=True)
    # Dropout draws from the global generator: seed it per phase (and per rank), so a
    # resumed optimise phase replays the killed one.
    torch.manual_seed(seed + ctx.process_index)

    history: list[dict[str, float]] = []
    bar = tqdm(
        total=total_steps,
        desc=f"round {round_index} optimize",
        unit="step",
        disable=not ctx.is_main_process,
        leave=False,
    )
    step = 0
    model.train()
    try:
        with training_model(ctx) as wrapped:
            for epoch, plan in enumerate(plans):
                for step_rows in plan:
                    step += 1
                    row = train_step(ctx, lists, step_rows, by_id, ref, optimizer, params, step, wrapped=wrapped)
                    row.update({"epoch": epoch, "step": step, "round": round_index})
                    history.append(row)
                    if ctx.is_main_process:
                        append_jsonl(log_path, row)
                        ctx.hook.larpo_optimizer_step(round_index=round_index, step=step, metrics=row)
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
    finally:
        bar.close()
        optimizer.zero_grad(set_to_none=True)
        # Scoring and generation outside this phase run in eval mode (no dropout), both
        # in an uninterrupted run and after a resume, which starts from a fresh model.
        model.eval()
    return summarize(history)


def shard(step_rows: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Return this rank's lists of a step: positions ``rank, rank + world_size, ...``."""
    return list(step_rows[rank::world_size])


def train_step(
    ctx: RunContext,
    lists: Sequence[RankedList],
    step_rows: Sequence[int],
    by_id: Mapping[str, Candidate],
    ref: torch.Tensor | None,
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.nn.Parameter],
    step: int,
    wrapped: torch.nn.Module | None = None,
) -> dict[str, float]:
    """Run one optimiser step over whole lists, accumulated over micro-batches and processes.

    ``step_rows`` are the step's list indices, identical on every rank. ``wrapped`` is
    the DDP wrapper of the policy when several processes train. Returns the step's
    loss, gradient norm and loss diagnostics averaged over all the step's lists.
    """
    settings = ctx.optimization
    accelerator = ctx.accelerator
    world_size = ctx.num_processes
    sizes = [len(lists[r].candidate_ids) for r in range(len(lists))]
    num_lists = len(step_rows)
    own_rows = shard(step_rows, ctx.process_index, world_size)
    micro_batches = pack(own_rows, sizes, settings.micro_batch_size)
    weight = 1.0
    if not micro_batches:
        # This rank has no list in the step (fewer lists than ranks), but DDP needs a
        # backward pass from every rank: run the step's first list with weight 0.
        micro_batches, weight = [[step_rows[0]]], 0.0

    totals: dict[str, float] = {}
    loss_sum = 0.0
    bad_prompts: list[str] = []
    for index, micro_rows in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        # Gradients are all-reduced once per step, on each rank's last micro-batch.
        sync = contextlib.nullcontext() if last or wrapped is None else accelerator.no_sync(wrapped)
        with sync:
            # forward under mixed precision
            with accelerator.autocast():
                inputs = micro_batch_inputs(ctx, lists, micro_rows, by_id, ref)
                output = ctx.loss(**inputs)
            losses = output.losses  # (b,)
            finite = torch.isfinite(losses.detach()).tolist()
            if weight:
                bad_prompts += [lists[r].prompt_id for r, ok in zip(micro_rows, finite) if not ok]
            if bad_prompts and world_size == 1:
                raise NonFiniteLossError(
                    f"non-finite loss at step {step} for prompts {bad_prompts}; the last good checkpoint is kept"
                )

            # backward, normalised by the step's list count (times W, which DDP divides out)
            accelerator.backward(losses.sum() * (weight * world_size / num_lists))
        loss_sum += weight * float(losses.detach().sum())
        for key, value in output.metrics.items():
            totals[key] = totals.get(key, 0.0) + weight * float(value) * len(micro_rows)

    # the step's totals over all ranks (one small all-reduce)
    keys = sorted(totals)
    local = torch.tensor([loss_sum, float(len(bad_prompts))] + [totals[k] for k in keys], dtype=torch.float64)
    if world_size > 1:
        local = accelerator.reduce(local.to(accelerator.device), reduction="sum").cpu()
    loss_sum, bad_count = float(local[0]), int(local[1])
    totals = {key: float(value) for key, value in zip(keys, local[2:])}
    if bad_count:
        everyone = gather_object(bad_prompts) if world_size > 1 else bad_prompts
        raise NonFiniteLossError(
            f"non-finite loss at step {step} for prompts {sorted(everyone)}; the last good checkpoint is kept"
        )

    if settings.max_grad_norm is not None:
        grad_norm = float(accelerator.clip_grad_norm_(params, settings.max_grad_norm))
    else:
        grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
    if not math.isfinite(grad_norm):
        prompt_ids = [lists[r].prompt_id for r in step_rows]
        raise NonFiniteLossError(
            f"non-finite gradient norm at step {step} (prompts {prompt_ids}); the last good checkpoint is kept"
        )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    row = {key: value / num_lists for key, value in totals.items()}
    row.update({"loss": loss_sum / num_lists, "grad_norm": grad_norm, "lists": float(num_lists)})
    return row


def summarize(history: Sequence[Mapping[str, float]]) -> dict[str, float]:
    if not history:
        return {"train/steps": 0.0}
    keys = [key for key in history[0] if key not in {"epoch", "step", "round"}]
    summary = {f"train/{key}": sum(row[key] for row in history) / len(history) for key in keys}
    summary["train/steps"] = float(len(history))
    summary["train/final_loss"] = float(history[-1]["loss"])
    return summary
