"""Checkpoint phase: an atomic Hugging Face-format checkpoint per round, and reloading it."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from larpo.atomic import replace_dir
from larpo.engine.context import RunContext


def checkpoint_dir(ctx: RunContext, round_index: int) -> Path:
    return ctx.round_dir(round_index) / "checkpoint"


def save_checkpoint(ctx: RunContext, round_index: int) -> Path:
    """Write the policy (adapter for LoRA, full weights otherwise) and tokenizer, atomically."""
    final = checkpoint_dir(ctx, round_index)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ctx.retriever.save(str(tmp))
    replace_dir(tmp, final)
    return final


def load_checkpoint(ctx: RunContext, round_index: int) -> None:
    """Load round ``round_index``'s weights into the (already LoRA-wrapped, if any) policy."""
    folder = checkpoint_dir(ctx, round_index)
    model = ctx.retriever.model
    adapter = folder / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(adapter)))
        return
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no model.safetensors or adapter_model.safetensors in {folder}")
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings are saved once, so the output head may be reported missing.
    real_missing = [k for k in missing if "lm_head" not in k]
    if real_missing or unexpected:
        raise RuntimeError(
            f"checkpoint {folder} does not match the model: missing {real_missing[:5]}, unexpected {unexpected[:5]}"
        )
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
