"""Shared fixtures: the real SmolLM2 tokenizer and a tiny random Llama built on it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """Folder of the packaged SmolLM2-135M-Instruct (converted once into larpo's cache)."""
    from larpo.model_source import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


def make_tiny_model(tokenizer, seed: int = 0):
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


@pytest.fixture()
def tiny_model(tokenizer):
    return make_tiny_model(tokenizer)


@pytest.fixture()
def tiny_retriever(tiny_model, tokenizer):
    """The built-in hf-causal-lm retriever wrapping a tiny random model."""
    from larpo.plugins import registry

    factory = registry("retriever").get("hf-causal-lm").factory
    return factory.from_objects(tiny_model, tokenizer)
