"""Optimise phase: the loss plugin over ``[B, K]`` list scores, AdamW, accelerate.

The batch is counted in responses. A step packs whole lists up to ``batch_size``
responses and splits them into micro-batches of at most ``micro_batch_size``
responses. Each micro-batch's loss is the sum of its per-list losses divided by the
number of lists in the whole step, so the accumulated gradient equals that of one
un-split batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from larpo.atomic import append_jsonl
from larpo.engine.context import RunContext
from larpo.types import Candidate, RankedList

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
    for i, row in enumerate(rows):
        ranked = lists[row]
        count = len(ranked.candidate_ids)
        mask[i, :count] = True
        rewards[i, :count] = torch.tensor(ranked.rewards)
        for k, cid in enumerate(ranked.candidate_ids):
            items.append(by_id[cid])
            lengths[i, k] = by_id[cid].num_tokens

    device = ctx.retriever.device if hasattr(ctx.retriever, "device") else torch.device("cpu")
    prompts = [ctx.prompts_by_id[c.prompt_id] for c in items]
    flat = ctx.retriever.sequence_logps(prompts, [c.token_ids for c in items]).float()  # (N,)
    mask = mask.to(device)
    policy_logps = torch.zeros(mask.shape, dtype=flat.dtype, device=device)
    policy_logps = policy_logps.masked_scatter(mask, flat)  # (b, K), zeros in padded slots
    inputs: dict[str, Any] = {
        "policy_logps": policy_logps,
        "mask": mask,
        "rewards": rewards.to(device),
        "lengths": lengths.to(device),
    }
    if ref is not None:
        ref_rows = ref[list(rows), :width]
        inputs["ref_logps"] = ref_rows.to(device).masked_fill(~mask, 0.0)
    return inputs


def run_optimize(
    ctx: RunContext,
    round_index: int,
    lists: Sequence[RankedList],
    by_id: Mapping[str, Candidate],
    ref: torch.Tensor | None,
) -> dict[str, float]:
    """Train for ``optimization.epochs`` passes over the round's lists; return a summary."""
    settings = ctx.optimization
    accelerator = ctx.accelerator
    model = ctx.retriever.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    sizes = [len(r.candidate_ids) for r in lists]
    generator = torch.Generator().manual_seed(ctx.phase_seed(round_index, "optimize"))
    plans = [plan_epoch(sizes, settings.batch_size, generator) for _ in range(settings.epochs)]
    total_steps = sum(len(plan) for plan in plans)
    log_path = ctx.round_dir(round_index) / "train_log.jsonl"
    log_path.unlink(missing_ok=True)

    model.train()
    history: list[dict[str, float]] = []
    bar = tqdm(total=total_steps, desc=f"round {round_index} optimize", unit="step", disable=not ctx.is_main_process, leave=False)
    step = 0
    for epoch, plan in enumerate(plans):
        for step_rows in plan:
            step += 1
            row = train_step(ctx, lists, step_rows, by_id, ref, optimizer, params, step)
            row.update({"epoch": epoch, "step": step, "round": round_index})
            history.append(row)
            append_jsonl(log_path, row)
            ctx.hook.larpo_optimizer_step(round_index=round_index, step=step, metrics=row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
    bar.close()
    optimizer.zero_grad(set_to_none=True)
    return summarize(history)


def train_step(
    ctx: RunContext,
    lists: Sequence[RankedList],
    step_rows: Sequence[int],
    by_id: Mapping[str, Candidate],
    ref: torch.Tensor | None,
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.nn.Parameter],
    step: int,
) -> dict[str, float]:
    """One optimiser step over whole lists, accumulated over micro-batches."""
    settings = ctx.optimization
    accelerator = ctx.accelerator
    sizes = [len(lists[r].candidate_ids) for r in range(len(lists))]
    num_lists = len(step_rows)
    totals: dict[str, float] = {}
    loss_sum = 0.0
    for micro_rows in pack(step_rows, sizes, settings.micro_batch_size):
        # forward under mixed precision
        with accelerator.autocast():
            inputs = micro_batch_inputs(ctx, lists, micro_rows, by_id, ref)
            output = ctx.loss(**inputs)
        losses = output.losses.float()  # (b,)
        if not torch.isfinite(losses).all():
            bad = [lists[r].prompt_id for r, ok in zip(micro_rows, torch.isfinite(losses).tolist()) if not ok]
            raise NonFiniteLossError(f"non-finite loss at step {step} for prompts {bad}; the last good checkpoint is kept")

        # backward, normalised by the step's list count so accumulation is exact
        accelerator.backward(losses.sum() / num_lists)
        loss_sum += float(losses.detach().sum())
        for key, value in output.metrics.items():
            totals[key] = totals.get(key, 0.0) + float(value) * len(micro_rows)

    if settings.max_grad_norm is not None:
        grad_norm = float(accelerator.clip_grad_norm_(params, settings.max_grad_norm))
    else:
        grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
    if not math.isfinite(grad_norm):
        prompt_ids = [lists[r].prompt_id for r in step_rows]
        raise NonFiniteLossError(f"non-finite gradient norm at step {step} (prompts {prompt_ids}); the last good checkpoint is kept")
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
