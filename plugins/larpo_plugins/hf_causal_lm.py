"""Retriever ``hf-causal-lm``: a transformers causal LM as the policy.

Sampling is batched (``num_return_sequences`` per prompt) with a generation config
built from the spec alone, so a model's bundled defaults (top_k, repetition penalty,
...) never leak into sampling. Sequence log-probabilities are summed over response
tokens only; padding is masked by the attention mask, never by token id, because
SmolLM2's pad token is its end-of-sequence token.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from larpo import hookimpl
from larpo.model_source import resolve_model
from larpo.registry import StrictParams
from larpo.types import Prompt, Sample

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class HFCausalLMParams(StrictParams):
    model: str = Field(
        "smollm2-135m-instruct",
        description="Packaged alias (smollm2-135m-instruct), local folder or hub id.",
    )
    tokenizer: str | None = Field(None, description="Tokenizer folder or hub id; defaults to model.")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda, cuda:1, ...")
    generation_batch_size: int = Field(16, ge=1, description="Prompts per generate call.")
    system_prompt: str | None = Field(None, description="System message; null keeps the chat template's default.")
    trust_remote_code: bool = False


class HFCausalLM:
    """A causal LM that samples responses and scores them by sequence log-probability."""

    def __init__(self, params: HFCausalLMParams) -> None:
        self.params = params
        path = resolve_model(params.model)
        tokenizer_path = resolve_model(params.tokenizer) if params.tokenizer else path
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, trust_remote_code=params.trust_remote_code)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model: torch.nn.Module = AutoModelForCausalLM.from_pretrained(
            path, dtype=DTYPES[params.dtype], trust_remote_code=params.trust_remote_code
        )
        device = params.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(device)
        self.name_or_path = path
        self._prompt_ids: dict[str, list[int]] = {}

    @classmethod
    def from_objects(cls, model: torch.nn.Module, tokenizer: Any, system_prompt: str | None = None) -> HFCausalLM:
        """Wrap an already loaded model and tokenizer (tests and Python composition)."""
        self = cls.__new__(cls)
        self.params = HFCausalLMParams(model="<object>", system_prompt=system_prompt)
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model
        self.name_or_path = getattr(model, "name_or_path", "<object>")
        self._prompt_ids = {}
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def eos_ids(self) -> set[int]:
        ids = self.tokenizer.eos_token_id
        return set(ids) if isinstance(ids, list) else {ids}

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """Token ids of the chat-formatted prompt, ending with the assistant header."""
        cached = self._prompt_ids.get(prompt.id)
        if cached is not None:
            return cached
        messages = []
        if self.params.system_prompt is not None:
            messages.append({"role": "system", "content": self.params.system_prompt})
        messages.append({"role": "user", "content": prompt.text})
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(prompt.text)["input_ids"]
        self._prompt_ids[prompt.id] = list(ids)
        return self._prompt_ids[prompt.id]

    # -- sampling -------------------------------------------------------------

    def generation_config(
        self, *, num_samples: int, temperature: float, top_p: float, max_new_tokens: int
    ) -> GenerationConfig:
        """Build the full sampling configuration from the spec's values."""
        settings: dict[str, Any] = {
            "num_return_sequences": num_samples,
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": 0,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
            "bos_token_id": self.tokenizer.bos_token_id,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if temperature == 0:
            settings["do_sample"] = False
        else:
            # Neutral values, not None: transformers fills None fields from the model's
            # bundled generation_config, which would silently change the sampler.
            settings.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0, min_p=0.0, typical_p=1.0)
        return GenerationConfig(**settings)

    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[Prompt],
        *,
        num_samples: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int,
    ) -> list[list[Sample]]:
        if temperature == 0 and num_samples != 1:
            raise ValueError("greedy decoding (temperature 0) draws one response per prompt; set num_samples=1")
        config = self.generation_config(
            num_samples=num_samples, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        )
        was_training = self.model.training
        self.model.eval()
        results: list[list[Sample]] = []
        batch_size = self.params.generation_batch_size
        try:
            for batch_index, start in enumerate(range(0, len(prompts), batch_size)):
                batch = prompts[start : start + batch_size]
                # A seed per batch makes every batch reproducible on its own (resume-safe).
                torch.manual_seed(seed * 1_000_003 + batch_index)
                results.extend(self._sample_batch(batch, config, num_samples))
        finally:
            self.model.train(was_training)
        return results

    def _sample_batch(self, batch: Sequence[Prompt], config: GenerationConfig, num_samples: int) -> list[list[Sample]]:
        encoded = [self.prompt_ids(prompt) for prompt in batch]
        width = max(len(ids) for ids in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded])  # (P, T) left-padded
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])
        output = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            generation_config=config,
        )
        generated = output.sequences[:, width:].cpu()  # (P * S, L)
        logits = torch.stack(output.logits, dim=1).float()  # (P * S, L, V)
        step_logps = torch.log_softmax(logits, dim=-1).gather(-1, generated.unsqueeze(-1).to(logits.device))
        step_logps = step_logps.squeeze(-1).cpu()  # (P * S, L)

        eos = self.eos_ids
        samples: list[Sample] = []
        for row in range(generated.shape[0]):
            tokens = generated[row].tolist()
            end = next((i for i, token in enumerate(tokens) if token in eos), None)
            finished = end is not None
            kept = tokens[: end + 1] if finished else tokens
            text_tokens = kept[:-1] if finished else kept
            samples.append(
                Sample(
                    text=self.tokenizer.decode(text_tokens, skip_special_tokens=True),
                    token_ids=tuple(kept),
                    finished=finished,
                    behaviour_logps=float(step_logps[row, : len(kept)].sum()),
                )
            )
        return [samples[i * num_samples : (i + 1) * num_samples] for i in range(len(batch))]

    # -- scoring ---------------------------------------------------------------

    def sequence_logps(self, prompts: Sequence[Prompt], responses: Sequence[Sequence[int]]) -> torch.Tensor:
        """Sum of log p(y_t | x, y_<t) over response tokens; ``[N]``, differentiable."""
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if any(len(response) == 0 for response in responses):
            raise ValueError("empty response token list; an empty response has no log-probability")
        sequences = [self.prompt_ids(p) + list(r) for p, r in zip(prompts, responses)]
        prompt_lengths = [len(self.prompt_ids(p)) for p in prompts]
        width = max(len(seq) for seq in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([seq + [pad] * (width - len(seq)) for seq in sequences])  # (N, T)
        attention = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq in sequences])
        # Response positions only: token t is predicted by the logits at t - 1.
        response_mask = torch.zeros_like(input_ids, dtype=torch.bool)
        for row, (start, seq) in enumerate(zip(prompt_lengths, sequences)):
            response_mask[row, start : len(seq)] = True

        device = self.device
        logits = self.model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        # Log-softmax in at least fp32 (fp64 stays fp64 for exact gradient checks).
        logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))  # (N, T - 1, V)
        targets = input_ids[:, 1:].to(device)  # (N, T - 1)
        token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        mask = response_mask[:, 1:].to(device)
        return (token_logps * mask).sum(dim=1)

    def save(self, path: str) -> None:
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)


@hookimpl
def larpo_register_retrievers(register: Any) -> None:
    register(
        "hf-causal-lm",
        HFCausalLM,
        HFCausalLMParams,
        summary="Transformers causal LM policy: batched sampling and sequence log-probabilities.",
    )
