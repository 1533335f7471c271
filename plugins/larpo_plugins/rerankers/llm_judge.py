"""Reranker ``llm-judge``: a frozen causal LM that judges a response by the log-odds of a verdict.

The judge template is filled with the prompt and the response and sent as a user
message through the judge's chat template, ending with the assistant header. The reward
is ``log p(positive) - log p(negative)`` for the first token of the assistant's reply,
so it is positive when the judge leans towards the positive verdict ("Yes").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from transformers import AutoModelForCausalLM

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

NAME = "llm-judge"

DEFAULT_TEMPLATE = (
    "Here is a question and an answer.\n\n"
    "Question: {prompt}\n\n"
    "Answer: {response}\n\n"
    "Is the answer correct, relevant and polite? Reply with Yes or No."
)


class LLMJudgeParams(RerankerParams):
    model: str = Field(
        "smollm2-135m-instruct", description="Packaged alias (smollm2-135m-instruct), local folder or hub id."
    )
    tokenizer: str | None = Field(None, description="Tokenizer folder or hub id; defaults to model.")
    template: str = Field(
        DEFAULT_TEMPLATE, description="Judge message with {prompt} and {response} placeholders (replaced verbatim)."
    )
    system_prompt: str | None = Field(None, description="System message; null keeps the chat template's default.")
    positive: str = Field("Yes", description="Verdict whose log-probability raises the reward (one token).")
    negative: str = Field("No", description="Verdict whose log-probability lowers the reward (one token).")
    max_length: int = Field(2048, ge=16, description="Tokens per judge input; longer inputs lose their start.")
    batch_size: int = Field(8, ge=1, description="Judge inputs per forward pass.")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda, cuda:1, ...")
    trust_remote_code: bool = False

    @field_validator("template")
    @classmethod
    def _has_placeholders(cls, template: str) -> str:
        missing = [name for name in ("{prompt}", "{response}") if name not in template]
        if missing:
            raise ValueError(f"judge template is missing {' and '.join(missing)}; it must contain both placeholders")
        return template


class LLMJudge(CachedReranker):
    """Scores a response by the judge's log-odds of the positive against the negative verdict."""

    plugin_name = NAME

    def __init__(self, params: LLMJudgeParams) -> None:
        super().__init__(params)
        self.params: LLMJudgeParams = params
        model, tokenizer = load_frozen_model(AutoModelForCausalLM, params)
        self._attach(model, tokenizer)

    @classmethod
    def from_objects(cls, model: torch.nn.Module, tokenizer: Any, params: LLMJudgeParams | None = None) -> LLMJudge:
        """Wrap an already loaded model and tokenizer (tests and Python composition)."""
        self = cls.__new__(cls)
        CachedReranker.__init__(self, params or LLMJudgeParams(model="<object>"))
        self._attach(model, tokenizer)
        return self

    def _attach(self, model: Any, tokenizer: Any) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.positive_id = self._verdict_id(self.params.positive)
        self.negative_id = self._verdict_id(self.params.negative)
        self.model_calls = 0

    def _verdict_id(self, verdict: str) -> int:
        ids = self.tokenizer(verdict, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"verdict {verdict!r} is {len(ids)} tokens for the judge's tokenizer; "
                "the log-odds need a single-token verdict, so choose another word"
            )
        return int(ids[0])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def judge_ids(self, prompt: str, response: str) -> list[int]:
        """Token ids of the judge input, ending where the verdict token is predicted."""
        message = self.params.template.replace("{prompt}", prompt).replace("{response}", response)
        messages = []
        if self.params.system_prompt is not None:
            messages.append({"role": "system", "content": self.params.system_prompt})
        messages.append({"role": "user", "content": message})
        text = chat_text(self.tokenizer, messages, add_generation_prompt=True)
        if text is None:
            ids = self.tokenizer(message)["input_ids"]
        else:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return list(ids)[-self.params.max_length :]

    @torch.no_grad()
    def score_pairs(self, pairs: Sequence[Pair]) -> list[Score]:
        rewards: list[float] = []
        for batch in batched(pairs, self.params.batch_size):
            rewards.extend(self._score_batch([self.judge_ids(prompt, response) for prompt, response, _ in batch]))
        return [Score(reward) for reward in rewards]

    def _score_batch(self, encoded: list[list[int]]) -> list[float]:
        width = max(len(ids) for ids in encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # Left padding puts every sequence's last token in the final column.
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded])  # (B, T)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])  # (B, T)
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)  # positions restart at 0 after the padding
        device = self.device
        logits = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids.to(device),
            logits_to_keep=1,
        ).logits[:, -1]  # (B, V)
        self.model_calls += 1
        logps = torch.log_softmax(logits.float(), dim=-1)
        log_odds = logps[:, self.positive_id] - logps[:, self.negative_id]
        return log_odds.cpu().tolist()


@hookimpl
def larpo_register_rerankers(register: Any) -> None:
    register(
        NAME,
        LLMJudge,
        LLMJudgeParams,
        summary="Frozen causal LM judge: log-odds of a Yes/No verdict after a judge template.",
    )
