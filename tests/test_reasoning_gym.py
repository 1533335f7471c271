"""The reasoning-gym prompt source and reranker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from larpo.plugins import registry
from larpo.types import STATUS_EMPTY, STATUS_OK, STATUS_TRUNCATED, STATUS_UNPARSABLE, Candidate

CHAIN_SUM = {
    "task": "chain_sum",
    "task_params": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
    "train_size": 20,
    "heldout_size": 30,
    "seed": 3,
}


def candidate(text: str, finished: bool = True) -> Candidate:
    return Candidate(
        id="c", prompt_id="p", text=text, token_ids=[1], finished=finished, behaviour_logps=0.0,
        round_index=1, temperature=1.0,
    )


@pytest.fixture(scope="module")
def splits():
    return registry("prompts").build("reasoning-gym", CHAIN_SUM).load()


def test_splits_are_disjoint_and_sized(splits):
    assert len(splits.train) == 20
    assert len(splits.heldout) == 30
    train_text = {p.text for p in splits.train}
    heldout_text = {p.text for p in splits.heldout}
    assert not train_text & heldout_text
    assert len(train_text) == 20
    assert len({p.id for p in [*splits.train, *splits.heldout]}) == 50


def test_splits_reproducible(splits):
    again = registry("prompts").build("reasoning-gym", CHAIN_SUM).load()
    assert [p.text for p in again.train] == [p.text for p in splits.train]


def test_too_many_prompts_requested():
    params = dict(CHAIN_SUM, train_size=5000, max_draws=3000)
    with pytest.raises(ValueError, match="distinct questions"):
        registry("prompts").build("reasoning-gym", params).load()


def test_unknown_task_suggests():
    with pytest.raises(ValidationError, match="chain_sum"):
        registry("prompts").build("reasoning-gym", dict(CHAIN_SUM, task="chain_summ"))


def test_reranker_scores_with_task_checker(splits):
    reranker = registry("reranker").build("reasoning-gym", {})
    prompt = splits.heldout[0]
    gold = str(prompt.metadata["answer"])
    wrong = str(int(gold) + 1)
    scores = reranker.score(
        [prompt] * 5,
        [
            candidate(f"The final answer is {gold}."),
            candidate(f"I think it is {wrong}."),
            candidate("   "),
            candidate("no digits here"),
            candidate(f"so the answer is {gold} and then", finished=False),
        ],
    )
    assert scores[0].reward == 1.0
    assert scores[0].status == STATUS_OK
    assert scores[1].reward == 0.0
    assert scores[1].status == STATUS_OK
    assert scores[2].status == STATUS_EMPTY
    assert scores[3].status == STATUS_UNPARSABLE
    assert scores[3].reward == 0.0
    assert scores[4].status == STATUS_TRUNCATED
    assert scores[4].reward == 1.0


def test_reranker_answer_tag_wins(splits):
    reranker = registry("reranker").build("reasoning-gym", {})
    prompt = splits.heldout[0]
    gold = str(prompt.metadata["answer"])
    text = f"<answer>{gold}</answer> then 12345"
    assert reranker.score([prompt], [candidate(text)])[0].reward == 1.0


def test_truncated_reward_override(splits):
    reranker = registry("reranker").build("reasoning-gym", {"truncated_reward": -1.0})
    prompt = splits.heldout[0]
    score = reranker.score([prompt], [candidate(str(prompt.metadata["answer"]), finished=False)])[0]
    assert score.reward == -1.0
    assert score.status == STATUS_TRUNCATED
