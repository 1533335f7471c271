"""Policy set-up before the first round: device, gradient checkpointing, LoRA, initial weights."""

from __future__ import annotations

import torch

from larpo.engine.context import RunContext


def prepare_policy(ctx: RunContext) -> None:
    """Move the policy to its device and apply gradient checkpointing and LoRA from the spec.

    For full fine-tuning with ``reference.mode: initial`` the starting weights are saved
    once, so the reference phase can restore them later.
    """
    accelerator = ctx.accelerator
    if ctx.num_processes > 1 and accelerator.device.type != "cpu":
        # One device per process: accelerate sets it from LOCAL_RANK.
        ctx.retriever.model.to(accelerator.device)
    torch.manual_seed(ctx.seed)  # LoRA's A matrices are drawn here, identically on every rank
    settings = ctx.optimization
    lora = settings.lora
    if settings.gradient_checkpointing:
        enable_gradient_checkpointing(ctx.retriever.model)
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
        if settings.gradient_checkpointing:
            # The frozen embeddings output no grad; checkpointed blocks still need one.
            ctx.retriever.model.enable_input_require_grads()
    elif ctx.reference.mode == "initial" and ctx.is_main_process:
        from larpo.atomic import save_tensors

        initial = ctx.run_dir / "initial-weights.safetensors"
        if not initial.exists():
            state = {k: v.detach().contiguous() for k, v in ctx.retriever.model.state_dict().items()}
            save_tensors(initial, _untie(state))


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Turn on activation checkpointing of a transformers model (non-reentrant, which DDP supports)."""
    enable = getattr(model, "gradient_checkpointing_enable", None)
    if enable is None:
        raise ValueError(
            f"optimization.gradient_checkpointing is true but {type(model).__name__} has no "
            "gradient_checkpointing_enable method; use a transformers model or set it to false"
        )
    enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Clone tensors that share storage (tied embeddings), which safetensors refuses to save."""
    seen: dict[int, str] = {}
    out = {}
    for key, tensor in state.items():
        pointer = tensor.data_ptr()
        out[key] = tensor.clone() if pointer in seen else tensor
        seen.setdefault(pointer, key)
    return out
