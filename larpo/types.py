"""Data records and component protocols shared by the core and plugins.

The IR mapping: a :class:`Prompt` is a query, a :class:`Candidate` is a passage,
a :class:`Retriever` is the policy LLM, a :class:`Reranker` is the reward model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

# Reranker score statuses. Anything other than "ok" is counted in the round's metrics.
STATUS_OK = "ok"
STATUS_EMPTY = "empty"
STATUS_TRUNCATED = "truncated"
STATUS_UNPARSABLE = "unparsable"
SCORE_STATUSES = (STATUS_OK, STATUS_EMPTY, STATUS_TRUNCATED, STATUS_UNPARSABLE)


@dataclass(frozen=True)
class Prompt:
    """A query: one user message, with source-specific metadata (for example the gold answer)."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "metadata": dict(self.metadata)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prompt:
        return cls(id=data["id"], text=data["text"], metadata=dict(data.get("metadata", {})))


@dataclass(frozen=True)
class Sample:
    """One response drawn by a retriever, before reranking."""

    text: str
    token_ids: tuple[int, ...]
    finished: bool  # True when the response ended with an end-of-sequence token
    behaviour_logps: float  # sum of the sampling model's log-probs over response tokens


@dataclass
class Candidate:
    """A passage: one response to one prompt, with its provenance and (after reranking) reward."""

    id: str
    prompt_id: str
    text: str
    token_ids: list[int]
    finished: bool
    behaviour_logps: float
    round_index: int
    temperature: float
    reward: float | None = None
    status: str = STATUS_OK

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True)
class Score:
    """A reranker's verdict on one response: reward plus an explicit validity status."""

    reward: float
    status: str = STATUS_OK


@dataclass(frozen=True)
class PromptSplits:
    train: list[Prompt]
    heldout: list[Prompt]


@dataclass
class RankedList:
    """A training list for one prompt: candidate ids in rank order, best first."""

    prompt_id: str
    candidate_ids: list[str]
    rewards: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RankedList:
        return cls(data["prompt_id"], list(data["candidate_ids"]), list(data["rewards"]))


@dataclass
class MiningResult:
    lists: list[RankedList]
    report: dict[str, Any]


@runtime_checkable
class Retriever(Protocol):
    """The policy LLM. ``model`` is the trainable ``torch.nn.Module`` (the engine may wrap it with LoRA)."""

    model: torch.nn.Module

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
        """Draw ``num_samples`` responses per prompt; ``temperature == 0`` means greedy."""
        ...

    def sequence_logps(self, prompts: Sequence[Prompt], responses: Sequence[Sequence[int]]) -> torch.Tensor:
        """Return ``[N]`` sums of log p(response token | prompt, prefix) over response tokens.

        Gradients flow when grad mode is on.
        """
        ...

    def save(self, path: str) -> None:
        """Write the model and tokenizer in Hugging Face format to ``path``."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """The reward model: scores (prompt, response) pairs."""

    def score(self, prompts: Sequence[Prompt], responses: Sequence[Candidate]) -> list[Score]:
        """Score ``responses[i]`` as an answer to ``prompts[i]``; both sequences have equal length."""
        ...


@runtime_checkable
class Miner(Protocol):
    """Turns each prompt's ranked pool into a training list."""

    def mine(
        self, pools: Mapping[str, Sequence[Candidate]], *, prompts: Mapping[str, Prompt] | None = None
    ) -> MiningResult:
        """Build one :class:`RankedList` per usable prompt from its pool (rewards set).

        ``prompts`` maps prompt ids to prompts, for miners that look across prompts.
        """
        ...


@runtime_checkable
class PromptSource(Protocol):
    def load(self) -> PromptSplits: ...
