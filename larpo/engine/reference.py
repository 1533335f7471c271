"""Reference phase: reference log-probs of every list item, once per round, with no grad.

The result is cached on disk (``reference.safetensors``), so no reference model is
held during the optimise phase.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from larpo.atomic import save_tensors
from larpo.engine.context import RunContext
from larpo.types import Candidate, RankedList


def collate_ids(lists: Sequence[RankedList]) -> tuple[list[list[str]], torch.Tensor]:
    """Return the id rows and a ``[L, K]`` bool mask for ragged lists (K = longest list)."""
    width = max((len(r.candidate_ids) for r in lists), default=0)
    mask = torch.zeros(len(lists), width, dtype=torch.bool)
    for row, ranked in enumerate(lists):
        mask[row, : len(ranked.candidate_ids)] = True
    return [list(r.candidate_ids) for r in lists], mask


@torch.no_grad()
def score_items(
    ctx: RunContext,
    items: Sequence[tuple[str, Candidate]],
    desc: str,
) -> torch.Tensor:
    """Return ``[N]`` sequence log-probs of (prompt id, response) pairs under the current model."""
    out = torch.zeros(len(items), dtype=torch.float32)
    step = ctx.optimization.micro_batch_size
    bar = tqdm(total=len(items), desc=desc, unit="response", disable=not ctx.is_main_process, leave=False)
    for start in range(0, len(items), step):
        chunk = items[start : start + step]
        prompts = [ctx.prompts_by_id[prompt_id] for prompt_id, _ in chunk]
        logps = ctx.retriever.sequence_logps(prompts, [c.token_ids for _, c in chunk])
        out[start : start + len(chunk)] = logps.float().cpu()
        bar.update(len(chunk))
    bar.close()
    return out


@contextmanager
def initial_policy(ctx: RunContext) -> Iterator[None]:
    """Temporarily turn the policy into the starting model (for ``reference.mode: initial``)."""
    model = ctx.retriever.model
    disable = getattr(model, "disable_adapter", None)
    if disable is not None:
        with disable():
            yield
        return
    initial = ctx.run_dir / "initial-weights.safetensors"
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(load_file(str(initial)), strict=False)
    try:
        yield
    finally:
        model.load_state_dict(current)


def run_reference(
    ctx: RunContext, round_index: int, lists: Sequence[RankedList], by_id: Mapping[str, Candidate]
) -> torch.Tensor:
    """Compute and cache ``[L, K]`` reference log-probs (0 in padded slots)."""
    ids, mask = collate_ids(lists)
    # Each item is scored under its list's prompt, as in the optimise phase.
    flat = [(ranked.prompt_id, by_id[cid]) for ranked, row in zip(lists, ids) for cid in row]
    if ctx.reference.mode == "initial" and round_index > 1:
        with initial_policy(ctx):
            values = score_items(ctx, flat, desc=f"round {round_index} reference")
    else:
        values = score_items(ctx, flat, desc=f"round {round_index} reference")
    ref = torch.zeros(mask.shape, dtype=torch.float32)
    ref[mask] = values
    save_tensors(ctx.round_dir(round_index) / "reference.safetensors", {"ref_logps": ref, "mask": mask})
    return ref


def load_reference(ctx: RunContext, round_index: int) -> torch.Tensor:
    return load_file(str(ctx.round_dir(round_index) / "reference.safetensors"))["ref_logps"]
