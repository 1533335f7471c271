"""Pool phase: candidates read back from each round's file, memorization, per-round temperature."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from larpo.atomic import write_jsonl
from larpo.engine.context import RunContext
from larpo.engine.pool import build_pool, pool_rounds, read_candidates
from larpo.engine.sample import run_sample
from larpo.spec import RoundsSpec
from larpo.types import Candidate, Prompt, PromptSplits, Sample

PROMPTS = [Prompt(id="p0", text="What is 2 + 2?"), Prompt(id="p1", text="Name a prime number.")]


def make_ctx(tmp_path, **rounds) -> RunContext:
    return RunContext(
        retriever=None,  # type: ignore[arg-type]
        reranker=None,  # type: ignore[arg-type]
        miner=None,  # type: ignore[arg-type]
        loss=None,  # type: ignore[arg-type]
        prompts=PromptSplits(train=list(PROMPTS), heldout=[]),
        rounds=RoundsSpec(**rounds),
        optimization=None,  # type: ignore[arg-type]
        reference=None,  # type: ignore[arg-type]
        evaluation=None,  # type: ignore[arg-type]
        run_dir=tmp_path,
    )


def round_candidates(round_index: int) -> list[Candidate]:
    """Two candidates per prompt, with floats that a lossy writer would change (0.1, 1/3)."""
    rows = []
    for prompt in PROMPTS:
        for k in range(2):
            rows.append(
                Candidate(
                    id=f"{prompt.id}/r{round_index}/{k}",
                    prompt_id=prompt.id,
                    text=f"answer {k} to {prompt.text} (round {round_index}) — naïve ✓",
                    token_ids=[round_index, k, 7],
                    finished=k == 0,
                    behaviour_logps=-1.0 / 3.0 - k,
                    round_index=round_index,
                    temperature=0.1 * round_index,
                    reward=0.1 * k,
                    status="ok" if k == 0 else "truncated",
                )
            )
    return rows


def write_round(ctx: RunContext, round_index: int) -> list[Candidate]:
    candidates = round_candidates(round_index)
    write_jsonl(ctx.round_dir(round_index) / "candidates.jsonl", (c.to_dict() for c in candidates))
    return candidates


@pytest.mark.parametrize(
    ("memorization", "round_index", "expected"),
    [
        ("none", 1, [1]),
        ("none", 3, [3]),
        ("previous", 1, [1]),
        ("previous", 3, [2, 3]),
        ("all", 1, [1]),
        ("all", 4, [1, 2, 3, 4]),
    ],
)
def test_pool_rounds_by_memorization(memorization, round_index, expected):
    assert pool_rounds(round_index, memorization) == expected


def test_pool_rounds_unknown_memorization():
    with pytest.raises(ValueError, match="unknown memorization 'everything'"):
        pool_rounds(2, "everything")


def test_pool_round_trip_next_round(tmp_path):
    ctx = make_ctx(tmp_path, memorization="previous")
    written = write_round(ctx, 1)
    write_round(ctx, 2)

    pools = build_pool(ctx, 2)
    from_round_1 = [c for pool in pools.values() for c in pool if c.round_index == 1]

    assert sorted(from_round_1, key=lambda c: c.id) == sorted(written, key=lambda c: c.id)
    assert list(read_candidates(ctx, 1)) == written


@pytest.mark.parametrize(
    ("memorization", "expected_rounds"),
    [("none", {3}), ("previous", {2, 3}), ("all", {1, 2, 3})],
)
def test_pool_members_by_memorization(tmp_path, memorization, expected_rounds):
    ctx = make_ctx(tmp_path, memorization=memorization)
    for round_index in (1, 2, 3):
        write_round(ctx, round_index)

    pools = build_pool(ctx, 3)

    assert set(pools) == {"p0", "p1"}
    rounds_seen = {c.round_index for pool in pools.values() for c in pool}
    assert rounds_seen == expected_rounds
    for prompt_id, pool in pools.items():
        assert len(pool) == 2 * len(expected_rounds)
        assert all(c.prompt_id == prompt_id for c in pool)
        assert [c.round_index for c in pool] == sorted(c.round_index for c in pool)


def test_pool_reads_disk_not_memory(tmp_path):
    ctx = make_ctx(tmp_path, memorization="previous")
    write_round(ctx, 1)
    write_round(ctx, 2)
    edited = round_candidates(1)
    edited[0].reward = 0.75
    write_jsonl(ctx.round_dir(1) / "candidates.jsonl", (c.to_dict() for c in edited))

    pools = build_pool(ctx, 2)

    first = next(c for c in pools["p0"] if c.id == "p0/r1/0")
    assert first.reward == 0.75


def test_pool_missing_round_file(tmp_path):
    ctx = make_ctx(tmp_path, memorization="previous")
    write_round(ctx, 2)
    with pytest.raises(FileNotFoundError, match="candidates of round 1 not found"):
        build_pool(ctx, 2)


def test_pool_duplicate_candidate_id(tmp_path):
    ctx = make_ctx(tmp_path, memorization="previous")
    write_round(ctx, 2)
    duplicate = round_candidates(2)  # same ids as round 2
    write_jsonl(ctx.round_dir(1) / "candidates.jsonl", (c.to_dict() for c in duplicate))
    with pytest.raises(RuntimeError, match="appears twice in the pool of round 2"):
        build_pool(ctx, 2)


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        ([1.0, 0.7, 0.4], {1: 1.0, 2: 0.7, 3: 0.4, 5: 0.4}),
        (0.8, {1: 0.8, 2: 0.8, 7: 0.8}),
    ],
)
def test_temperature_per_round(temperature, expected):
    rounds = RoundsSpec(temperature=temperature)
    for round_index, value in expected.items():
        assert rounds.temperature_at(round_index) == value


@pytest.mark.parametrize("temperature", [0.0, [1.0, 0.0], []])
def test_temperature_rejects_non_positive(temperature):
    with pytest.raises(ValidationError, match="temperatures must be > 0"):
        RoundsSpec(temperature=temperature)


class RecordingRetriever:
    """Returns one fixed response per request and records the temperature it was asked for."""

    def __init__(self) -> None:
        self.temperatures: list[float] = []

    def sample(self, prompts, *, num_samples, temperature, top_p, max_new_tokens, seed):
        self.temperatures.append(temperature)
        return [
            [Sample(text="4", token_ids=(19,), finished=True, behaviour_logps=-0.5)] * num_samples
            for _ in prompts
        ]


def test_sample_uses_round_temperature(tmp_path):
    ctx = make_ctx(tmp_path, temperature=[1.2, 0.6], samples_per_prompt=2)
    retriever = RecordingRetriever()
    ctx.retriever = retriever  # type: ignore[assignment]
    ctx.accelerator = SimpleNamespace(is_main_process=False)

    first = run_sample(ctx, 1)
    second = run_sample(ctx, 2)
    third = run_sample(ctx, 3)

    assert retriever.temperatures == [1.2, 0.6, 0.6]
    assert {c.temperature for c in first} == {1.2}
    assert {c.temperature for c in second} == {0.6}
    assert {c.temperature for c in third} == {0.6}
    assert [c.id for c in second] == ["p0/r2/0", "p0/r2/1", "p1/r2/0", "p1/r2/1"]
