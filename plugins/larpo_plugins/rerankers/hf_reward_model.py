"""Reranker ``hf-reward-model``: an ``AutoModelForSequenceClassification`` reward model.

The reward model uses its own tokenizer, so it scores the response text whatever the
policy's tokenizer is. With a chat template, (prompt, response) becomes a user and an
assistant message. Without one, the pair is encoded as a text pair (BERT style).

Decoder reward models (Llama, Qwen, Mistral, GPT-2, ...) apply a ``score`` head to
every position. The reward is read at the last position whose attention mask is 1,
never found by the pad id, because the pad token often equals the end-of-sequence
token that ends the assistant turn. Models without a per-position ``score`` head
(BERT and other encoders) pool their input themselves and their logits are used as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from transformers import AutoModelForSequenceClassification

from larpo import hookimpl
from larpo.types import Score
from larpo_plugins.rerankers.common import (
    CachedReranker,
    Pair,
    RerankerParams,
    batched,
    chat_text,
    load_frozen_model,
)

NAME = "hf-reward-model"


class HFRewardModelParams(RerankerParams):
    model: str = Field(description="Folder or hub id of an AutoModelForSequenceClassification reward model.")
    tokenizer: str | None = Field(None, description="Tokenizer folder or hub id; defaults to model.")
    label_index: int = Field(0, ge=0, description="Output logit read as the reward (reward models have one).")
    system_prompt: str | None = Field(None, description="System message for chat templates; null keeps the default.")
    max_length: int = Field(2048, ge=8, description="Tokens per pair; longer chats lose their start.")
    batch_size: int = Field(8, ge=1, description="Pairs per forward pass.")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda, cuda:1, ...")
    trust_remote_code: bool = False


class HFRewardModel(CachedReranker):
    """Scores (prompt, response) pairs with a sequence-classification reward model."""

    plugin_name = NAME

    def __init__(self, params: HFRewardModelParams) -> None:
        super().__init__(params)
        self.params: HFRewardModelParams = params
        model, tokenizer = load_frozen_model(AutoModelForSequenceClassification, params)
        self._attach(model, tokenizer)

    @classmethod
    def from_objects(
        cls, model: torch.nn.Module, tokenizer: Any, params: HFRewardModelParams | None = None
    ) -> HFRewardModel:
        """Wrap an already loaded model and tokenizer (tests and Python composition)."""
        self = cls.__new__(cls)
        CachedReranker.__init__(self, params or HFRewardModelParams(model="<object>"))
        self._attach(model, tokenizer)
        return self

    def _attach(self, model: Any, tokenizer: Any) -> None:
        num_labels = model.config.num_labels
        if self.params.label_index >= num_labels:
            raise ValueError(
                f"label_index {self.params.label_index} is out of range: the model has {num_labels} output labels"
            )
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            # transformers rejects batches above 1 without a pad id; the reward is still read by mask.
            model.config.pad_token_id = tokenizer.pad_token_id
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_calls = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompt: str, response: str) -> dict[str, list[int]]:
        """Tokenize one pair with the reward model's tokenizer, without padding."""
        messages = []
        if self.params.system_prompt is not None:
            messages.append({"role": "system", "content": self.params.system_prompt})
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        text = chat_text(self.tokenizer, messages, add_generation_prompt=False)
        if text is None:
            encoded = self.tokenizer(prompt, response, truncation=True, max_length=self.params.max_length)
            return {key: list(value) for key, value in encoded.items()}
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = list(ids)[-self.params.max_length :]  # keep the end, where the reward is read
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    @torch.no_grad()
    def score_pairs(self, pairs: Sequence[Pair]) -> list[Score]:
        rewards: list[float] = []
        for batch in batched(pairs, self.params.batch_size):
            rewards.extend(self._score_batch([self.encode(prompt, response) for prompt, response, _ in batch]))
        return [Score(reward) for reward in rewards]

    def _score_batch(self, encoded: list[dict[str, list[int]]]) -> list[float]:
        inputs = self.tokenizer.pad(encoded, padding=True, padding_side="right", return_tensors="pt")
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        mask = inputs["attention_mask"]  # (B, T)

        captured: dict[str, torch.Tensor] = {}
        head = getattr(self.model, "score", None)
        handle = None
        if isinstance(head, torch.nn.Module):
            handle = head.register_forward_hook(lambda module, args, output: captured.update(logits=output))
        try:
            outputs = self.model(**inputs)
            self.model_calls += 1
        finally:
            if handle is not None:
                handle.remove()
        logits = captured.get("logits", outputs.logits)
        if logits.dim() == 3:  # (B, T, L): one row per position, read the last unmasked one
            positions = torch.arange(mask.shape[1], device=mask.device)
            last = (positions * mask).argmax(dim=1)  # (B,)
            logits = logits[torch.arange(logits.shape[0], device=logits.device), last]  # (B, L)
        return logits[:, self.params.label_index].float().cpu().tolist()


@hookimpl
def larpo_register_rerankers(register: Any) -> None:
    register(
        NAME,
        HFRewardModel,
        HFRewardModelParams,
        summary="Sequence-classification reward model with its own tokenizer and chat template.",
    )
