"""The length-penalty reranker: penalty arithmetic, params validation and registration through larpo."""

from __future__ import annotations

import importlib.metadata

import larpo_length_penalty
import pytest
from larpo_length_penalty import LengthPenaltyParams, LengthPenaltyReranker
from pydantic import ValidationError

from larpo.plugins import PluginHost, PluginRecord, get_host
from larpo.types import STATUS_TRUNCATED, Candidate, Prompt, Score


class FixedReranker:
    """Reranker with preset scores, returned in order, so each test controls the base reward."""

    def __init__(self, scores: list[Score]) -> None:
        self.scores = scores

    def score(self, prompts, responses):
        return self.scores[: len(responses)]


def candidate(num_tokens: int) -> Candidate:
    return Candidate(f"c{num_tokens}", "p", "text", list(range(num_tokens)), True, 0.0, 1, 1.0)


def test_penalty_per_token_beyond_free_tokens():
    reranker = LengthPenaltyReranker(FixedReranker([]), per_token=0.5, free_tokens=2)
    assert reranker.penalty(0) == 0.0
    assert reranker.penalty(2) == 0.0
    assert reranker.penalty(5) == pytest.approx(1.5)  # 3 tokens beyond the 2 free ones, 0.5 each


def test_penalty_is_capped():
    reranker = LengthPenaltyReranker(FixedReranker([]), per_token=0.1, max_penalty=0.25)
    assert reranker.penalty(2) == pytest.approx(0.2)
    assert reranker.penalty(10) == pytest.approx(0.25)


def test_score_subtracts_penalty_and_keeps_status():
    base = FixedReranker([Score(1.0), Score(1.0), Score(0.0, STATUS_TRUNCATED)])
    reranker = LengthPenaltyReranker(base, per_token=0.01)
    prompts = [Prompt("p", "question")] * 3
    scores = reranker.score(prompts, [candidate(10), candidate(40), candidate(48)])
    assert [s.reward for s in scores] == pytest.approx([0.9, 0.6, -0.48])
    assert [s.status for s in scores] == ["ok", "ok", STATUS_TRUNCATED]
    assert scores[0].reward > scores[1].reward  # equally correct, the shorter response ranks higher


def test_score_rejects_wrong_number_of_base_scores():
    reranker = LengthPenaltyReranker(FixedReranker([Score(1.0)]), per_token=0.01)
    with pytest.raises(ValueError, match="returned 1 scores for 2 responses"):
        reranker.score([Prompt("p", "q")] * 2, [candidate(1), candidate(2)])


def test_params_validate_base_reranker():
    params = LengthPenaltyParams.model_validate({"base": {"plugin": "reasoning-gym", "extract": "last-number"}})
    assert params.per_token == 0.01
    assert params.base == {"plugin": "reasoning-gym", "extract": "last-number"}


@pytest.mark.parametrize(
    ("params", "location", "text"),
    [
        ({"base": {"plugin": "reasoning-gim"}}, ("base", "plugin"), "Did you mean 'reasoning-gym'?"),
        ({"base": {"plugin": "reasoning-gym", "extrct": "auto"}}, ("base", "extrct"), "Did you mean 'extract'?"),
        ({"base": {"plugin": "reasoning-gym", "extract": "regex"}}, ("base", "extract"), "Input should be"),
        ({"base": {"plugin": "reasoning-gym"}, "per_token": -1}, ("per_token",), "greater than or equal to 0"),
        ({"base": {"plugin": "reasoning-gym"}, "per_tokn": 0.1}, ("per_tokn",), "Extra inputs"),
        ({"per_token": 0.1}, ("base",), "Field required"),
    ],
)
def test_params_errors_have_paths(params, location, text):
    with pytest.raises(ValidationError) as caught:
        LengthPenaltyParams.model_validate(params)
    errors = {tuple(error["loc"]): error["msg"] for error in caught.value.errors()}
    assert location in errors, errors
    assert text in errors[location]


def test_entry_point_is_installed():
    entry_points = importlib.metadata.entry_points(group="larpo", name="length-penalty")
    (entry_point,) = entry_points
    assert entry_point.value == "larpo_length_penalty"
    assert entry_point.dist is not None
    assert entry_point.dist.name == "larpo-length-penalty"


def test_registered_through_host():
    host = PluginHost()
    host.add_plugin(larpo_length_penalty, PluginRecord("length-penalty", "larpo-length-penalty", "0.1.0", "x"))
    entry = host.registries["reranker"].get("length-penalty")
    assert entry.params_model is LengthPenaltyParams
    assert entry.distribution == "larpo-length-penalty"
    assert host.records["length-penalty"].hooks == ["larpo_register_rerankers"]


def test_factory_builds_base_through_registry():
    reranker = get_host().registries["reranker"].build(
        "length-penalty", {"base": {"plugin": "reasoning-gym", "invalid_reward": -1.0}, "per_token": 0.02}
    )
    assert type(reranker.base).__name__ == "ReasoningGymReranker"
    assert reranker.base.params.invalid_reward == -1.0
    assert reranker.per_token == 0.02
