"""Miners rank and faiss, the FAISS index wrapper, and the engine's mining report."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from larpo_plugins.embedding_index import VectorIndex, normalize
from larpo_plugins.faiss_miner import FaissMiner, FaissMinerParams
from larpo_plugins.rank_miner import RankMiner, RankMinerParams
from pydantic import ValidationError

from larpo.engine.mine import log_report, reward_quantiles
from larpo.engine.optimize import micro_batch_inputs
from larpo.plugins import registry
from larpo.types import Candidate, MiningResult, Prompt, RankedList


def make_candidate(
    prompt_id: str, k: int, reward: float | None, text: str | None = None
) -> Candidate:
    return Candidate(
        id=f"{prompt_id}/r1/{k}",
        prompt_id=prompt_id,
        text=text if text is not None else f"{prompt_id} response {k}",
        token_ids=[k + 1] * (k + 1),
        finished=True,
        behaviour_logps=-1.0,
        round_index=1,
        temperature=1.0,
        reward=reward,
    )


def make_pool(prompt_id: str, rewards, texts=None) -> list[Candidate]:
    texts = texts or [None] * len(rewards)
    return [make_candidate(prompt_id, k, r, t) for k, (r, t) in enumerate(zip(rewards, texts))]


class TableEmbedder:
    """Looks vectors up by text (unnormalised on purpose); other texts get seeded random vectors."""

    def __init__(self, table: dict[str, list[float]] | None = None, dim: int = 64) -> None:
        self.table = table or {}
        self.dim = dim
        self.calls = 0
        self.texts_seen: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts_seen.extend(texts)
        rows = []
        for text in texts:
            if text in self.table:
                rows.append(self.table[text])
            else:
                seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
                rows.append(np.random.default_rng(seed).normal(size=self.dim) * 3.0)
        return np.asarray(rows, dtype=np.float32)


def ids(ranked: RankedList) -> list[str]:
    return [cid.split("/")[-1] for cid in ranked.candidate_ids]


# -- rank miner -------------------------------------------------------------------

# Rewards by sampling slot. Best first, the slots are 0 (.9), 3 (.7), 2 (.5), 4 (.3), 1 (.1), 5 (0).
REWARDS = [0.9, 0.1, 0.5, 0.7, 0.3, 0.0]


def test_rank_default_top1_bottom3():
    result = RankMiner(RankMinerParams()).mine({"p": make_pool("p", REWARDS)})
    assert len(result.lists) == 1
    assert ids(result.lists[0]) == ["0", "4", "1", "5"]
    assert result.lists[0].rewards == [0.9, 0.3, 0.1, 0.0]
    assert result.report["negatives/shortfall"] == 0
    assert "hint" not in result.report


def test_rank_top_k_positives():
    result = RankMiner(RankMinerParams(num_positives=2, num_negatives=2)).mine(
        {"p": make_pool("p", REWARDS)}
    )
    assert ids(result.lists[0]) == ["0", "3", "1", "5"]
    assert result.report["positives_per_list"] == 2


def test_rank_window_top():
    params = RankMinerParams(negatives="window", window=(2, 4), num_negatives=2)
    result = RankMiner(params).mine({"p": make_pool("p", REWARDS)})
    # ranks 2 and 3 hold slots 2 (.5) and 4 (.3); slots 3, 1 and 5 lie outside the window
    assert ids(result.lists[0]) == ["0", "2", "4"]
    assert result.report["removed/outside_window"] == 3


def test_rank_window_open_end():
    params = RankMinerParams(negatives="window", window=(3, None), num_negatives=5)
    result = RankMiner(params).mine({"p": make_pool("p", REWARDS)})
    assert ids(result.lists[0]) == ["0", "4", "1", "5"]
    assert result.report["negatives/shortfall"] == 2


def test_rank_window_random_seeded():
    pools = {f"p{i}": make_pool(f"p{i}", REWARDS) for i in range(20)}
    params = RankMinerParams(
        negatives="window", window=(1, 6), num_negatives=2, sampling="random", seed=7
    )
    first = RankMiner(params).mine(pools)
    again = RankMiner(params).mine(pools)
    other_seed = RankMiner(params.model_copy(update={"seed": 8})).mine(pools)

    assert [r.candidate_ids for r in first.lists] == [r.candidate_ids for r in again.lists]
    assert [r.candidate_ids for r in first.lists] != [r.candidate_ids for r in other_seed.lists]
    rank_of_slot = {"3": 1, "2": 2, "4": 3, "1": 4, "5": 5}
    picks = set()
    for ranked in first.lists:
        negatives = ids(ranked)[1:]
        assert len(negatives) == 2
        assert len(set(negatives)) == 2
        ranks = [rank_of_slot[n] for n in negatives]
        assert ranks == sorted(ranks)
        picks.add(tuple(negatives))
    assert len(picks) > 1


def test_rank_absolute_margin():
    result = RankMiner(RankMinerParams(min_margin=0.25)).mine({"p": make_pool("p", REWARDS)})
    # 0.9 - 0.25 = 0.65, so slot 3 (.7) fails the margin and the bottom three remain
    assert ids(result.lists[0]) == ["0", "4", "1", "5"]
    assert result.report["removed/min_margin"] == 1


def test_rank_relative_margin():
    params = RankMinerParams(relative_margin=0.5, num_negatives=5)
    result = RankMiner(params).mine({"p": make_pool("p", REWARDS)})
    # 0.9 - 0.9 * 0.5 = 0.45: slots 3 (.7) and 2 (.5) are removed
    assert ids(result.lists[0]) == ["0", "4", "1", "5"]
    assert result.report["removed/relative_margin"] == 2
    assert result.report["negatives/shortfall"] == 2


def test_rank_relative_margin_negative_reward():
    pool = make_pool("p", [-1.0, -1.05, -2.0])
    result = RankMiner(RankMinerParams(relative_margin=0.1)).mine({"p": pool})
    # -1 - |-1| * 0.1 = -1.1: -1.05 is removed, -2 stays
    assert ids(result.lists[0]) == ["0", "2"]
    assert result.report["removed/relative_margin"] == 1


def test_rank_drops_flat_lists():
    pools = {
        "flat": make_pool("flat", [0.5, 0.5, 0.5]),
        "single": make_pool("single", [1.0]),
        "unscored": make_pool("unscored", [None, None]),
        "good": make_pool("good", [1.0, 0.0]),
    }
    result = RankMiner(RankMinerParams()).mine(pools)
    assert [r.prompt_id for r in result.lists] == ["good"]
    assert result.report["dropped/no_reward_spread"] == 3
    assert result.report["skipped/unscored"] == 2
    assert result.report["lists"] == 1
    assert result.report["prompts"] == 4


def test_rank_ties_with_positive_excluded():
    result = RankMiner(RankMinerParams()).mine({"p": make_pool("p", [1.0, 1.0, 0.0])})
    assert ids(result.lists[0]) == ["0", "2"]


def test_rank_margin_drops_list_with_hint():
    result = RankMiner(RankMinerParams(min_margin=2.0)).mine({"p": make_pool("p", REWARDS)})
    assert result.lists == []
    assert result.report["dropped/no_negative_after_filters"] == 1
    assert result.report["removed/min_margin"] == 5
    assert "miner.min_margin" in result.report["hint"]


def test_rank_shortfall_shorter_masked_list():
    pools = {"short": make_pool("short", [1.0, 0.0, 0.5]), "full": make_pool("full", REWARDS)}
    result = RankMiner(RankMinerParams(num_negatives=5)).mine(pools)
    short, full = result.lists

    assert ids(short) == ["0", "2", "1"]
    assert ids(full) == ["0", "3", "2", "4", "1", "5"]
    assert result.report["negatives/shortfall"] == 3 + 0
    assert result.report["lists/short"] == 1
    assert "rounds.samples_per_prompt" in result.report["hint"]

    # the engine's collator pads the short list and masks its padding
    by_id = {c.id: c for pool in pools.values() for c in pool}
    retriever = SimpleNamespace(
        sequence_logps=lambda prompts, responses: torch.zeros(len(responses))
    )
    ctx = SimpleNamespace(retriever=retriever, prompts_by_id={"short": None, "full": None})
    inputs = micro_batch_inputs(ctx, result.lists, [0, 1], by_id, None)  # type: ignore[arg-type]
    assert inputs["mask"].tolist() == [[True] * 3 + [False] * 3, [True] * 6]
    assert inputs["rewards"][0].tolist() == [1.0, 0.5, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "params",
    [
        {"window": (3, 3)},
        {"window": (-1, 4)},
        {"sampling": "random"},
        {"num_negatives": 0},
        {"relative_margin": 1.0},
        {"bottom": 3},
    ],
)
def test_rank_params_rejected(params):
    with pytest.raises(ValidationError):
        RankMinerParams(**params)


# -- FAISS index -------------------------------------------------------------------


def test_index_more_neighbours_than_rows():
    vectors = normalize(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    for exact_threshold in (10, 0):
        for index_type in ("hnsw", "ivf"):
            params = FaissMinerParams(exact_threshold=exact_threshold, index_type=index_type)
            hits = VectorIndex(vectors, params).search(normalize(np.array([[1, 0.1, 0]])), k=10)[0]
            assert [row for row, _ in hits] == [0, 1]


def test_index_unnormalised_exact_match_first():
    exact = [1.0, 2.0, 0.0]
    long_vector = [
        40.0,
        10.0,
        30.0,
    ]  # raw inner product with `exact` is 60 > 5, cosine is only 0.53
    corpus = normalize(np.array([long_vector, exact], dtype=np.float32))
    hits = VectorIndex(corpus, FaissMinerParams()).search(normalize(np.array([exact])), k=2)[0]
    assert [row for row, _ in hits] == [1, 0]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-6)
    assert hits[1][1] == pytest.approx(60.0 / (np.sqrt(5.0) * np.sqrt(2600.0)), abs=1e-6)


# -- faiss miner -------------------------------------------------------------------


def test_faiss_identical_texts_never_paired():
    texts = ["the answer is 4", "the answer is 4", "the answer is 5", "the answer is 4", "no idea"]
    rewards = [1.0, 0.0, 0.5, 0.2, 0.1]
    pool = make_pool("p", rewards, texts)
    embedder = TableEmbedder()
    for threshold in (0.5, 0.95, 1.0):
        params = FaissMinerParams(num_negatives=4, near_duplicate_threshold=threshold)
        result = FaissMiner(params, embedder=embedder).mine({"p": pool})
        chosen = [pool[int(slot)].text for slot in ids(result.lists[0])]
        assert chosen[0] == "the answer is 4"
        assert "the answer is 4" not in chosen[1:]
        assert result.report["removed/near_duplicate"] >= 2


def test_faiss_identical_texts_as_positives():
    # with two positives, a third copy of their text is a duplicate of both
    pool = make_pool("p", [1.0, 0.9, 0.1, 0.0], ["same", "same", "same", "other"])
    result = FaissMiner(FaissMinerParams(num_positives=2), embedder=TableEmbedder()).mine(
        {"p": pool}
    )
    assert ids(result.lists[0]) == ["0", "1", "3"]


def test_faiss_more_neighbours_than_index():
    pool = make_pool("p", [1.0, 0.5, 0.0])
    params = FaissMinerParams(search_k=50, num_negatives=2)
    for exact_threshold in (10_000, 0):
        miner = FaissMiner(
            params.model_copy(update={"exact_threshold": exact_threshold}), embedder=TableEmbedder()
        )
        result = miner.mine({"p": pool})
        assert sorted(result.lists[0].candidate_ids) == sorted(c.id for c in pool)
        assert len(set(result.lists[0].candidate_ids)) == 3


def test_faiss_search_k_limits_retrieval():
    table = {"pos": [1, 0, 0], "near": [1, 0.5, 0], "mid": [1, 1.5, 0], "far": [0, 0, 1]}
    pool = make_pool("p", [1.0, 0.5, 0.4, 0.3], ["pos", "far", "mid", "near"])
    result = FaissMiner(FaissMinerParams(search_k=1), embedder=TableEmbedder(table)).mine(
        {"p": pool}
    )
    assert ids(result.lists[0]) == ["0", "3"]
    assert result.report["removed/not_retrieved"] == 2
    assert result.report["negatives/shortfall"] == 2
    assert "miner.search_k" in result.report["hint"]


def test_faiss_shortfall_shorter_list():
    pool = make_pool("p", [1.0, 0.2, 0.4])
    result = FaissMiner(FaissMinerParams(num_negatives=5), embedder=TableEmbedder()).mine(
        {"p": pool}
    )
    assert ids(result.lists[0]) == ["0", "2", "1"]
    assert result.lists[0].rewards == [1.0, 0.4, 0.2]
    assert result.report["negatives/shortfall"] == 3
    assert result.report["lists/short"] == 1


def test_faiss_unnormalised_long_vector():
    table = {
        "positive": [1.0, 0.0, 0.0],
        "close": [0.8, 0.6, 0.0],  # cosine 0.8
        "long": [5.0, 20.0, 0.0],  # raw inner product 5 > 0.8, cosine 0.24
        "upward": [0.0, 0.0, 9.0],  # cosine 0
    }
    pool = make_pool("p", [1.0, 0.1, 0.2, 0.3], ["positive", "long", "close", "upward"])
    result = FaissMiner(FaissMinerParams(num_negatives=1), embedder=TableEmbedder(table)).mine(
        {"p": pool}
    )
    assert ids(result.lists[0]) == ["0", "2"]


def test_faiss_negatives_in_reward_order():
    table = {
        "positive": [1, 0, 0],
        "a": [1, 0.5, 0],
        "b": [1, 1, 0],
        "c": [0, 1, 0],
        "d": [0, 0, 1],
    }
    pool = make_pool("p", [1.0, 0.1, 0.7, 0.4, 0.2], ["positive", "a", "b", "c", "d"])
    result = FaissMiner(FaissMinerParams(num_negatives=2), embedder=TableEmbedder(table)).mine(
        {"p": pool}
    )
    # the two nearest are a (cos 0.89) and b (0.71); listed by reward: b (.7) before a (.1)
    assert ids(result.lists[0]) == ["0", "2", "1"]
    assert result.lists[0].rewards == [1.0, 0.7, 0.1]


def test_faiss_reward_margin_and_flat():
    pools = {"flat": make_pool("flat", [0.3, 0.3]), "p": make_pool("p", [1.0, 0.95, 0.2])}
    result = FaissMiner(FaissMinerParams(min_margin=0.1), embedder=TableEmbedder()).mine(pools)
    assert [r.prompt_id for r in result.lists] == ["p"]
    assert ids(result.lists[0]) == ["0", "2"]
    assert result.report["dropped/no_reward_spread"] == 1
    assert result.report["removed/min_margin"] == 1


def random_round(num_prompts: int, per_prompt: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    table: dict[str, list[float]] = {}
    pools = {}
    prompts = {}
    for p in range(num_prompts):
        prompt_id = f"q{p}"
        prompts[prompt_id] = Prompt(id=prompt_id, text=f"question {p}")
        table[f"question {p}"] = rng.normal(size=dim).tolist()
        texts = [f"q{p} text {k}" for k in range(per_prompt)]
        for text in texts:
            table[text] = rng.normal(size=dim).tolist()
        rewards = rng.permutation(per_prompt).astype(float).tolist()
        pools[prompt_id] = make_pool(prompt_id, rewards, texts)
    return pools, prompts, table


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_faiss_exact_and_approximate_agree(index_type):
    pools, prompts, table = random_round(num_prompts=30, per_prompt=8, dim=16, seed=3)
    base = FaissMinerParams(num_negatives=3, cross_prompt_negatives=2, cross_prompt_neighbours=2)
    exact = FaissMiner(base, embedder=TableEmbedder(table)).mine(pools, prompts=prompts)
    approximate_params = base.model_copy(
        update={"exact_threshold": 0, "index_type": index_type, "ivf_nprobe": 64}
    )
    approximate = FaissMiner(approximate_params, embedder=TableEmbedder(table)).mine(
        pools, prompts=prompts
    )
    assert len(exact.lists) == 30
    assert [r.to_dict() for r in approximate.lists] == [r.to_dict() for r in exact.lists]


def brute_force_negatives(pool, table, num_negatives):
    """Lower-reward responses by cosine to the best one, computed with plain numpy."""
    ranked = sorted(pool, key=lambda c: -c.reward)
    positive = np.asarray(table[ranked[0].text])
    scored = []
    for candidate in ranked[1:]:
        vector = np.asarray(table[candidate.text])
        scored.append(
            (
                float(vector @ positive / np.linalg.norm(vector) / np.linalg.norm(positive)),
                candidate.id,
            )
        )
    scored.sort(reverse=True)
    return {cid for _, cid in scored[:num_negatives]}


def test_faiss_matches_brute_force():
    pools, _, table = random_round(num_prompts=10, per_prompt=6, dim=8, seed=11)
    result = FaissMiner(FaissMinerParams(num_negatives=2), embedder=TableEmbedder(table)).mine(
        pools
    )
    for ranked in result.lists:
        assert set(ranked.candidate_ids[1:]) == brute_force_negatives(
            pools[ranked.prompt_id], table, 2
        )


def test_faiss_cross_prompt_negatives():
    table = {
        "prompt a": [1, 0, 0, 0],
        "prompt b": [0.9, 0.1, 0, 0],  # nearest to a
        "prompt c": [0, 0, 1, 0],
        "a best": [0, 1, 0, 0],
        "a worst": [0, 0.2, 1, 0],
        "b copy of a best": [0, 1, 0, 0],  # a near-duplicate of a's positive: never a negative
        "b close": [0, 1, 0.4, 0],
        "b far": [0, 0, 0, 1],
        "c close": [0, 1, 0.1, 0],
        "c other": [0, 0, 0, 1],
    }
    pools = {
        "a": make_pool("a", [1.0, 0.2], ["a best", "a worst"]),
        "b": make_pool("b", [0.9, 0.5, 0.1], ["b copy of a best", "b close", "b far"]),
        "c": make_pool("c", [0.6, 0.3], ["c close", "c other"]),
    }
    prompts = {pid: Prompt(id=pid, text=f"prompt {pid}") for pid in pools}
    params = FaissMinerParams(cross_prompt_negatives=1, cross_prompt_neighbours=1)

    result = FaissMiner(params, embedder=TableEmbedder(table)).mine(pools, prompts=prompts)

    list_a = next(r for r in result.lists if r.prompt_id == "a")
    assert list_a.candidate_ids == ["a/r1/0", "a/r1/1", "b/r1/1"]
    assert list_a.rewards == [1.0, 0.2, 0.2]
    assert result.report["cross_prompt/negatives"] == 3
    assert result.report["cross_prompt/removed/near_duplicate"] >= 1

    default = FaissMiner(FaissMinerParams(), embedder=TableEmbedder(table)).mine(
        pools, prompts=prompts
    )
    for ranked in default.lists:
        assert all(cid.startswith(ranked.prompt_id + "/") for cid in ranked.candidate_ids)


def test_faiss_cross_prompt_needs_prompts():
    miner = FaissMiner(FaissMinerParams(cross_prompt_negatives=1), embedder=TableEmbedder())
    with pytest.raises(ValueError, match="cross_prompt_negatives needs the prompt texts"):
        miner.mine({"p": make_pool("p", [1.0, 0.0])})


def test_faiss_memory_cache():
    embedder = TableEmbedder()
    miner = FaissMiner(FaissMinerParams(), embedder=embedder)
    pool = make_pool("p", [1.0, 0.5, 0.0], ["x", "y", "x"])
    first = miner.mine({"p": pool})
    assert embedder.texts_seen == ["x", "y"]
    second = miner.mine({"p": pool})
    assert embedder.calls == 1
    assert second.lists[0].to_dict() == first.lists[0].to_dict()


def test_faiss_disk_cache(tmp_path):
    pool = make_pool("p", [1.0, 0.5, 0.0])
    params = FaissMinerParams(cache_dir=str(tmp_path))
    first_embedder = TableEmbedder()
    first = FaissMiner(params, embedder=first_embedder, embedder_name="table").mine({"p": pool})
    assert first_embedder.calls == 1
    assert len(list(tmp_path.rglob("shard-*.npz"))) == 1

    second_embedder = TableEmbedder()
    second = FaissMiner(params, embedder=second_embedder, embedder_name="table").mine({"p": pool})
    assert second_embedder.calls == 0
    assert second.lists[0].to_dict() == first.lists[0].to_dict()

    other_model = TableEmbedder()
    FaissMiner(params, embedder=other_model, embedder_name="another model").mine({"p": pool})
    assert other_model.calls == 1


def test_faiss_accepts_callable_embedder():
    table = TableEmbedder()
    miner = FaissMiner(FaissMinerParams(), embedder=lambda texts: table.encode(texts))
    result = miner.mine({"p": make_pool("p", [1.0, 0.0])})
    assert ids(result.lists[0]) == ["0", "1"]


def test_faiss_registered_through_entry_point():
    entry = registry("miner").get("faiss")
    assert entry.params_model is FaissMinerParams
    with pytest.raises(ValidationError, match="near_duplicate"):
        registry("miner").build("faiss", {"near_duplicate": 0.9})
    miner = registry("miner").build("faiss", {"num_negatives": 2, "index_type": "ivf"})
    assert miner.params.num_negatives == 2


def test_faiss_real_minilm_model():
    texts = [
        "The answer is 42.",
        "The answer is 42.",
        "Paris is the capital of France.",
        "The answer is 41.",
        "Turtles live for a long time.",
    ]
    pool = make_pool("p", [1.0, 0.0, 0.1, 0.2, 0.3], texts)
    miner = FaissMiner(FaissMinerParams(num_negatives=1, device="cpu"))
    result = miner.mine({"p": pool})
    # MiniLM puts "The answer is 41." nearest to the positive (cosine 0.86); the identical
    # copy is a near-duplicate
    assert ids(result.lists[0]) == ["0", "3"]
    assert result.report["removed/near_duplicate"] == 1
    assert miner.cache.computed == 4


# -- engine mining report -----------------------------------------------------------


def test_reward_quantiles_two_positives():
    lists = [
        RankedList("a", ["1", "2", "3"], [1.0, 0.8, 0.1]),
        RankedList("b", ["4", "5", "6"], [0.9, 0.7, 0.3]),
    ]
    report = reward_quantiles(MiningResult(lists=lists, report={"positives_per_list": 2}))
    assert report["quantiles/positive"] == pytest.approx([0.73, 0.85, 0.97])
    assert report["quantiles/negative"] == pytest.approx([0.12, 0.2, 0.28])
    # margins: 0.8 - 0.1 = 0.7 and 0.7 - 0.3 = 0.4
    assert report["quantiles/margin"] == pytest.approx([0.43, 0.55, 0.67])


def test_log_report_warns_hint(caplog):
    result = RankMiner(RankMinerParams(num_negatives=4)).mine({"p": make_pool("p", [1.0, 0.0])})
    logger = logging.getLogger("larpo")
    attach = not logger.propagate  # larpo.log.setup_logging turns propagation off
    if attach:
        logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="larpo"):
            log_report(3, result.report)
    finally:
        if attach:
            logger.removeHandler(caplog.handler)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"round 3: {result.report['hint']}"]
    assert "negatives/shortfall" in caplog.records[0].getMessage()
    assert Counter(r.levelno for r in caplog.records)[logging.INFO] == 1
