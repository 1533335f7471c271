"""Helpers for testing larpo components and plugins without real weights."""

from __future__ import annotations

from typing import Any


def make_tiny_model(tokenizer: Any, seed: int = 0) -> Any:
    """Build a random 2-layer Llama over ``tokenizer``'s vocabulary, in eval mode.

    With SmolLM2's real tokenizer this gives a policy that runs the whole round loop in
    seconds on a CPU. Its outputs are random text, so tests pair it with a reranker
    whose rewards do not depend on the text making sense.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()
