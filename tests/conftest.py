"""Shared fixtures: the real SmolLM2 tokenizer and a tiny random Llama built on it.

``make_tiny_model`` is re-exported from :mod:`larpo.testing` for the test modules.
"""

from __future__ import annotations

import pytest

from larpo.testing import make_tiny_model


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """Folder of the packaged SmolLM2-135M-Instruct (converted once into larpo's cache)."""
    from larpo.model_source import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


@pytest.fixture()
def tiny_model(tokenizer):
    return make_tiny_model(tokenizer)


@pytest.fixture()
def tiny_retriever(tiny_model, tokenizer):
    """The built-in hf-causal-lm retriever wrapping a tiny random model."""
    from larpo.plugins import registry

    factory = registry("retriever").get("hf-causal-lm").factory
    return factory.from_objects(tiny_model, tokenizer)


__all__ = ["make_tiny_model"]
