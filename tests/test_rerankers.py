"""Reranker and prompt-source plugins: reward models, cross-encoders, judges, similarity, ensembles."""

from __future__ import annotations

import json
import math

import pytest
import torch
from larpo_plugins.rerankers.common import DEFAULT_INVALID_REWARD
from larpo_plugins.rerankers.ensemble import EnsembleParams, EnsembleReranker, normalize_rewards
from larpo_plugins.rerankers.hf_reward_model import HFRewardModel, HFRewardModelParams
from larpo_plugins.rerankers.llm_judge import LLMJudge, LLMJudgeParams
from pydantic import ValidationError

from larpo.model_source import resolve_model
from larpo.plugins import registry
from larpo.score_cache import ScoreCache, reranker_identity
from larpo.types import STATUS_EMPTY, STATUS_OK, STATUS_TRUNCATED, STATUS_UNPARSABLE, Candidate, Prompt, Score

PROMPT = Prompt(id="p0", text="What is 2 + 2?", metadata={"answer": "4"})
# The packaged SmolLM2-135M-Instruct judge scored 13 of the 16 pairs in
# tests/data/judge_pairs.jsonl correctly (0.8125, CPU, float32); the floor allows one pair to flip.
ACCURACY_FLOOR = 0.75
RESPONSES = ["4", "The answer is 4, because two plus two makes four.", "It is five."]


def candidate(text: str, finished: bool = True, token_ids: list[int] | None = None, index: int = 0) -> Candidate:
    return Candidate(f"c{index}", PROMPT.id, text, token_ids or [1, 2], finished, 0.0, 0, 1.0)


def candidates(texts: list[str]) -> list[Candidate]:
    return [candidate(text, index=index) for index, text in enumerate(texts)]


def rewards(scores: list[Score]) -> list[float]:
    return [score.reward for score in scores]


@pytest.fixture(scope="session")
def bert_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model("all-minilm-l6-v2"))


def tiny_bert_config(num_labels: int = 1):
    """MiniLM's BERT config scaled down to a few thousand parameters per layer."""
    from transformers import BertConfig

    config = BertConfig.from_pretrained(resolve_model("all-minilm-l6-v2"))
    config.update({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64})
    config.num_labels = num_labels
    return config


def tiny_bert_classifier(seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config()).eval()


def tiny_llama_classifier(tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForSequenceClassification(config).eval()


# -- hf-reward-model ---------------------------------------------------------------


def test_reward_model_reads_last_real_token(tokenizer):
    model = tiny_llama_classifier(tokenizer)
    reranker = HFRewardModel.from_objects(model, tokenizer, HFRewardModelParams(model="<object>", cache=False))
    batched = reranker.score([PROMPT] * 3, candidates(RESPONSES))

    # Reference: each conversation alone (no padding), score head at its final position.
    for response, score in zip(RESPONSES, batched):
        ids = torch.tensor([reranker.encode(PROMPT.text, response)["input_ids"]])
        with torch.no_grad():
            hidden = model.model(input_ids=ids).last_hidden_state[:, -1]
            expected = float(model.score(hidden)[0, 0])
        assert score.reward == pytest.approx(expected, abs=1e-5)
        assert score.status == STATUS_OK
    assert len({round(value, 6) for value in rewards(batched)}) == 3


def test_reward_model_pads_with_eos_id(tokenizer):
    # SmolLM2 pads with its end-of-sequence id; the chat text itself contains that id.
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    model = tiny_llama_classifier(tokenizer, seed=1)
    reranker = HFRewardModel.from_objects(model, tokenizer, HFRewardModelParams(model="<object>", cache=False))
    assert tokenizer.eos_token_id in reranker.encode(PROMPT.text, "4")["input_ids"]
    single = [reranker.score([PROMPT], [candidate(text)])[0].reward for text in RESPONSES]
    batched = rewards(reranker.score([PROMPT] * 3, candidates(RESPONSES)))
    assert batched == pytest.approx(single, abs=1e-5)


def test_reward_model_own_tokenizer(tokenizer, bert_tokenizer):
    """A BERT reward model scores text that a SmolLM2 policy produced, with BERT's tokenizer."""
    model = tiny_bert_classifier()
    reranker = HFRewardModel.from_objects(model, bert_tokenizer, HFRewardModelParams(model="<object>", cache=False))
    policy_ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in RESPONSES]
    responses = [candidate(text, token_ids=ids, index=i) for i, (text, ids) in enumerate(zip(RESPONSES, policy_ids))]
    scores = reranker.score([PROMPT] * 3, responses)

    for response, score in zip(RESPONSES, scores):
        encoded = bert_tokenizer(PROMPT.text, response, return_tensors="pt")
        with torch.no_grad():
            expected = float(model(**encoded).logits[0, 0])
        assert score.reward == pytest.approx(expected, abs=1e-5)
    assert bert_tokenizer.vocab_size != len(tokenizer)


def test_reward_model_label_index_checked(tokenizer):
    model = tiny_llama_classifier(tokenizer)
    params = HFRewardModelParams(model="<object>", label_index=1)
    with pytest.raises(ValueError, match="label_index 1 is out of range"):
        HFRewardModel.from_objects(model, tokenizer, params)


def test_reward_model_built_from_folder(tmp_path, bert_tokenizer):
    model = tiny_bert_classifier(seed=3)
    model.save_pretrained(tmp_path)
    bert_tokenizer.save_pretrained(tmp_path)
    reranker = registry("reranker").build("hf-reward-model", {"model": str(tmp_path), "device": "cpu"})
    encoded = bert_tokenizer(PROMPT.text, RESPONSES[1], return_tensors="pt")
    with torch.no_grad():
        expected = float(model(**encoded).logits[0, 0])
    assert reranker.score([PROMPT], [candidate(RESPONSES[1])])[0].reward == pytest.approx(expected, abs=1e-5)


# -- cross-encoder ----------------------------------------------------------------


def test_cross_encoder_scores_pairs(tmp_path, bert_tokenizer):
    model = tiny_bert_classifier(seed=2)
    model.save_pretrained(tmp_path)
    bert_tokenizer.save_pretrained(tmp_path)
    reranker = registry("reranker").build("cross-encoder", {"model": str(tmp_path), "device": "cpu"})
    scores = reranker.score([PROMPT] * 3, candidates(RESPONSES))

    for response, score in zip(RESPONSES, scores):
        encoded = bert_tokenizer(PROMPT.text, response, return_tensors="pt")
        with torch.no_grad():
            expected = float(model(**encoded).logits[0, 0])
        assert score.reward == pytest.approx(expected, abs=1e-4)
        assert score.status == STATUS_OK

    sigmoid = registry("reranker").build(
        "cross-encoder", {"model": str(tmp_path), "device": "cpu", "activation": "sigmoid"}
    )
    squashed = rewards(sigmoid.score([PROMPT] * 3, candidates(RESPONSES)))
    assert squashed == pytest.approx([1 / (1 + math.exp(-value)) for value in rewards(scores)], abs=1e-5)


# -- llm-judge ----------------------------------------------------------------------


def make_judge(tiny_model, tokenizer, **params) -> LLMJudge:
    return LLMJudge.from_objects(tiny_model, tokenizer, LLMJudgeParams(model="<object>", **params))


def test_llm_judge_log_odds(tiny_model, tokenizer):
    judge = make_judge(tiny_model, tokenizer, cache=False)
    scores = judge.score([PROMPT] * 3, candidates(RESPONSES))

    yes = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    no = tokenizer("No", add_special_tokens=False)["input_ids"][0]
    for response, score in zip(RESPONSES, scores):
        ids = judge.judge_ids(PROMPT.text, response)
        with torch.no_grad():
            logps = torch.log_softmax(tiny_model(input_ids=torch.tensor([ids])).logits[0, -1], dim=-1)
        assert score.reward == pytest.approx(float(logps[yes] - logps[no]), abs=1e-4)


def test_llm_judge_template_fills_placeholders(tiny_model, tokenizer):
    judge = make_judge(tiny_model, tokenizer, template="Q={prompt} A={response} {not_a_field}? Yes or No.")
    text = tokenizer.decode(judge.judge_ids("two {plus} two", "four"))
    assert "Q=two {plus} two A=four {not_a_field}? Yes or No." in text
    assert text.rstrip().endswith("assistant")


def test_llm_judge_template_needs_placeholders():
    with pytest.raises(ValidationError, match=r"missing \{response\}"):
        LLMJudgeParams(template="Is this good? {prompt}")


def test_llm_judge_rejects_multi_token_verdict(tiny_model, tokenizer):
    with pytest.raises(ValueError, match="single-token verdict"):
        make_judge(tiny_model, tokenizer, positive="Absolutely")


# -- cache and statuses ---------------------------------------------------------------


def test_cache_prevents_rescoring(tiny_model, tokenizer, tmp_path):
    path = tmp_path / "scores.jsonl"
    judge = make_judge(tiny_model, tokenizer, batch_size=16, cache_path=str(path))
    first = judge.score([PROMPT] * 4, candidates([*RESPONSES, RESPONSES[0]]))
    assert judge.model_calls == 1
    assert judge.cache is not None
    assert judge.cache.misses == 3  # the repeated response is scored once

    again = judge.score([PROMPT] * 3, candidates(RESPONSES))
    assert judge.model_calls == 1
    assert rewards(again) == rewards(first[:3])

    judge.score([PROMPT] * 2, candidates([RESPONSES[0], "Four."]))
    assert judge.model_calls == 2
    assert judge.cache.misses == 4

    reloaded = make_judge(tiny_model, tokenizer, batch_size=4, cache_path=str(path))
    assert rewards(reloaded.score([PROMPT] * 3, candidates(RESPONSES))) == rewards(first[:3])
    assert reloaded.model_calls == 0


def test_cache_identity_ignores_batch_size():
    base = {"model": "m", "template": "t", "batch_size": 8, "cache_path": None}
    same = reranker_identity("llm-judge", {**base, "batch_size": 2}, ["batch_size", "cache_path"])
    assert reranker_identity("llm-judge", base, ["batch_size", "cache_path"]) == same
    other = reranker_identity("llm-judge", {**base, "template": "u"}, ["batch_size", "cache_path"])
    assert ScoreCache(same).key("p", "r") != ScoreCache(other).key("p", "r")


def test_cache_skips_partial_line(tmp_path):
    path = tmp_path / "scores.jsonl"
    cache = ScoreCache("identity", path)
    cache.put("p", "r", Score(1.5))
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"key": "abc", "rew')
    assert ScoreCache("identity", path).get("p", "r") == Score(1.5)


def test_statuses_empty_and_truncated(tiny_model, tokenizer):
    judge = make_judge(tiny_model, tokenizer, cache=False)
    responses = [candidate("", index=0), candidate("  \n", index=1), candidate("4", finished=False, index=2)]
    scores = judge.score([PROMPT] * 3, responses)
    assert scores[0] == Score(DEFAULT_INVALID_REWARD, STATUS_EMPTY)
    assert scores[1] == Score(DEFAULT_INVALID_REWARD, STATUS_EMPTY)
    assert scores[2].status == STATUS_TRUNCATED
    assert scores[2].reward == pytest.approx(judge.score([PROMPT], [candidate("4")])[0].reward)
    assert judge.model_calls == 2  # the empty responses never reached the model

    fixed = make_judge(tiny_model, tokenizer, cache=False, truncated_reward=-5.0, empty_reward=-7.0)
    scores = fixed.score([PROMPT] * 3, responses)
    assert scores == [Score(-7.0, STATUS_EMPTY), Score(-7.0, STATUS_EMPTY), Score(-5.0, STATUS_TRUNCATED)]
    assert fixed.model_calls == 0


def test_status_from_cache_follows_response(tiny_model, tokenizer):
    judge = make_judge(tiny_model, tokenizer)
    finished = judge.score([PROMPT], [candidate("4")])[0]
    truncated = judge.score([PROMPT], [candidate("4", finished=False)])[0]
    assert finished.status == STATUS_OK
    assert truncated == Score(finished.reward, STATUS_TRUNCATED)


# -- embedding-similarity ---------------------------------------------------------------


def test_embedding_similarity_ranks_by_reference():
    reranker = registry("reranker").build("embedding-similarity", {"device": "cpu", "cache": False})
    prompt = Prompt("p1", "What is the capital of France?", {"answer": "Paris is the capital of France."})
    texts = ["Paris is the capital of France.", "The capital is Paris.", "Bananas are yellow."]
    scores = reranker.score([prompt] * 3, candidates(texts))
    assert scores[0].reward == pytest.approx(1.0, abs=1e-5)
    assert scores[0].reward > scores[1].reward > scores[2].reward


def test_embedding_similarity_needs_reference():
    reranker = registry("reranker").build("embedding-similarity", {"device": "cpu", "reference_key": "gold"})
    with pytest.raises(ValueError, match="no reference answer under metadata key 'gold'"):
        reranker.score([PROMPT], [candidate("4")])


# -- ensemble -----------------------------------------------------------------------


class FixedReranker:
    """Returns preset scores in order, for checking the ensemble's arithmetic."""

    def __init__(self, scores: list[Score]) -> None:
        self.scores = scores

    def score(self, prompts, responses):
        return self.scores[: len(responses)]


def test_normalize_rewards():
    values = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    # zscore: mean 2, population std sqrt(2/3), so 1 -> -1 / sqrt(2/3) = -1.2247
    assert normalize_rewards(values, "zscore").tolist() == pytest.approx([-1.2247449, 0.0, 1.2247449])
    assert normalize_rewards(values, "minmax").tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert normalize_rewards(values, "none").tolist() == [1.0, 2.0, 3.0]
    assert normalize_rewards(torch.tensor([4.0, 4.0]), "zscore").tolist() == [0.0, 0.0]
    assert normalize_rewards(torch.tensor([4.0, 4.0]), "minmax").tolist() == [0.0, 0.0]


def test_ensemble_weighted_sum_and_status():
    first = FixedReranker([Score(1.0), Score(2.0), Score(3.0)])
    second = FixedReranker([Score(10.0), Score(0.0, STATUS_UNPARSABLE), Score(30.0, STATUS_TRUNCATED)])
    ensemble = EnsembleReranker([(first, 2.0, "minmax"), (second, 0.5, "none")])
    scores = ensemble.score([PROMPT] * 3, candidates(["a", "b", "c"]))
    # minmax of [1, 2, 3] is [0, 0.5, 1]: 2 * [0, 0.5, 1] + 0.5 * [10, 0, 30]
    assert rewards(scores) == pytest.approx([5.0, 1.0, 17.0])
    assert [score.status for score in scores] == [STATUS_OK, STATUS_UNPARSABLE, STATUS_TRUNCATED]


def test_ensemble_empty_response_skips_members():
    member = FixedReranker([Score(1.0)])
    ensemble = EnsembleReranker([(member, 1.0, "none")])
    scores = ensemble.score([PROMPT] * 2, candidates(["", "a"]))
    assert scores == [Score(DEFAULT_INVALID_REWARD, STATUS_EMPTY), Score(1.0, STATUS_OK)]


def test_ensemble_validates_members():
    with pytest.raises(ValidationError) as error:
        EnsembleParams(members=[{"plugin": "reasoning-gym", "extrct": "full"}, {"plugin": "no-such"}])
    text = str(error.value)
    assert "members.0.extrct" in text
    assert "Did you mean 'extract'?" in text
    assert "unknown reranker plugin 'no-such'" in text
    with pytest.raises(ValidationError, match="normalize must be one of"):
        EnsembleParams(members=[{"plugin": "reasoning-gym", "normalize": "l2"}])


def test_ensemble_built_through_registry():
    ensemble = registry("reranker").build(
        "ensemble",
        {
            "members": [
                {"plugin": "reasoning-gym", "weight": 2.0},
                {"plugin": "reasoning-gym", "weight": 1.0, "extract": "answer-tag", "invalid_reward": -1.0},
            ]
        },
    )
    prompts, splits = leg_counting_prompts(1)
    gold = str(prompts[0].metadata["answer"])
    scores = ensemble.score([prompts[0]] * 2, candidates([f"<answer>{gold}</answer>", f"It is {gold}."]))
    assert rewards(scores) == pytest.approx([3.0, 1.0])  # 2 * 1 + 1 * 1, then 2 * 1 + 1 * (-1)
    assert [score.status for score in scores] == [STATUS_OK, STATUS_UNPARSABLE]


# -- reasoning-gym on another task ---------------------------------------------------------


def leg_counting_prompts(count: int):
    params = {"task": "leg_counting", "train_size": count, "heldout_size": 1}
    source = registry("prompts").build("reasoning-gym", params)
    splits = source.load()
    return splits.train, splits


def test_reasoning_gym_leg_counting():
    prompts, splits = leg_counting_prompts(3)
    assert len(splits.heldout) == 1
    reranker = registry("reranker").build("reasoning-gym", {})
    for prompt in prompts:
        gold = int(prompt.metadata["answer"])
        texts = [f"<answer>{gold}</answer>", f"So there are {gold + 3} legs.", "", "I am not sure."]
        scores = reranker.score([prompt] * 4, candidates(texts))
        assert scores[0] == Score(1.0, STATUS_OK)
        assert scores[1].reward < 1.0
        assert scores[2].status == STATUS_EMPTY
        assert scores[3].status == STATUS_UNPARSABLE


# -- prompt sources ---------------------------------------------------------------------


def test_mt_bench_source():
    splits = registry("prompts").build("mt-bench", {"categories": ["math"], "heldout_size": 3}).load()
    assert len(splits.heldout) == 3
    assert len(splits.train) == 7
    prompts = splits.train + splits.heldout
    assert {prompt.metadata["category"] for prompt in prompts} == {"math"}
    assert all(prompt.metadata.get("answer") for prompt in prompts)
    assert len({prompt.id for prompt in prompts}) == 10


def test_mt_bench_unknown_category():
    source = registry("prompts").build("mt-bench", {"categories": ["maths"]})
    with pytest.raises(ValueError, match="Did you mean 'math'"):
        source.load()


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def test_jsonl_source_split_column(tmp_path):
    rows = [{"q": f"question {i}", "gold": str(i), "split": "train" if i < 5 else "test"} for i in range(8)]
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, rows)
    params = {"path": str(path), "prompt_column": "q", "reference_column": "gold", "split_column": "split"}
    splits = registry("prompts").build("jsonl", {**params, "heldout_size": 2}).load()
    assert sorted(prompt.text for prompt in splits.train) == [f"question {i}" for i in range(5)]
    assert len(splits.heldout) == 2
    assert all(prompt.text in {"question 5", "question 6", "question 7"} for prompt in splits.heldout)
    assert all(prompt.metadata["answer"] == prompt.text.split()[-1] for prompt in splits.train)
    assert all("gold" not in prompt.metadata for prompt in splits.train)


def test_jsonl_source_parquet_sizes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": [f"p{i}" for i in range(10)], "id": [f"id{i}" for i in range(10)]}), path)
    params = {"path": str(path), "id_column": "id", "heldout_size": 3, "train_size": 4}
    splits = registry("prompts").build("jsonl", params).load()
    assert len(splits.heldout) == 3
    assert len(splits.train) == 4
    assert not {p.id for p in splits.train} & {p.id for p in splits.heldout}
    with pytest.raises(ValueError, match="heldout_size \\+ train_size needs 12"):
        registry("prompts").build("jsonl", {**params, "heldout_size": 8}).load()


def test_jsonl_source_missing_prompt_column(tmp_path):
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [{"question": "hi"}])
    with pytest.raises(ValueError, match="column 'prompt' is missing"):
        registry("prompts").build("jsonl", {"path": str(path), "heldout_size": 0}).load()


def test_hf_dataset_source(tmp_path):
    import datasets

    data = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"prompt": ["a", "b", "c"], "answer": ["1", "2", "3"]}),
            "test": datasets.Dataset.from_dict({"prompt": ["d", "e"], "answer": ["4", "5"]}),
        }
    )
    data.save_to_disk(tmp_path / "ds")
    params = {"path": str(tmp_path / "ds"), "reference_column": "answer", "heldout_split": "test", "heldout_size": 2}
    splits = registry("prompts").build("hf-dataset", params).load()
    assert sorted(p.text for p in splits.train) == ["a", "b", "c"]
    assert sorted(p.text for p in splits.heldout) == ["d", "e"]
    assert {p.text: p.metadata["answer"] for p in splits.heldout} == {"d": "4", "e": "5"}

    files = tmp_path / "rows.jsonl"
    write_jsonl(files, [{"prompt": f"q{i}"} for i in range(4)])
    splits = registry("prompts").build("hf-dataset", {"path": str(files), "builder": "json", "heldout_size": 1}).load()
    assert len(splits.train) == 3
    assert len(splits.heldout) == 1


# -- eval-reranker --------------------------------------------------------------------------


class KeywordReranker:
    """Rewards each occurrence of the word 'good' in a response."""

    def __init__(self, params) -> None:
        self.params = params

    def score(self, prompts, responses):
        return [Score(float(response.text.split().count("good"))) for response in responses]


def test_eval_reranker_accuracy(tmp_path, capsys):
    from larpo.cli import main
    from larpo.registry import StrictParams

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(
        pairs,
        [
            {"prompt": "q1", "better": "good good", "worse": "good"},  # correct
            {"prompt": "q2", "better": "good", "worse": "bad"},  # correct
            {"prompt": "q3", "better": "good answer", "worse": "poor"},  # correct
            {"prompt": "q4", "better": "fine", "worse": "good"},  # wrong
            {"prompt": "q5", "better": "same", "worse": "text"},  # tie, counted as wrong
        ],
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "retriever: {plugin: hf-causal-lm}\n"
        "data: {plugin: reasoning-gym, task: leg_counting}\n"
        "reranker: {plugin: test-keyword}\n",
        encoding="utf-8",
    )
    rerankers = registry("reranker")
    rerankers.add("test-keyword", KeywordReranker, StrictParams)
    try:
        code = main(["eval-reranker", str(pairs), "--spec", str(spec), "--json"])
    finally:
        rerankers.remove("test-keyword")
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"] == 5
    assert result["correct"] == 3
    assert result["ties"] == 1
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["statuses"] == {"ok": 10}


def test_eval_reranker_rejects_bad_pairs(tmp_path, capsys):
    from larpo.cli import main

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"prompt": "q", "better": "a"}])
    code = main(["eval-reranker", str(pairs), "--spec", "examples/mtbench-judge.yaml"])
    assert code == 2
    assert "missing or non-string keys worse" in capsys.readouterr().err


# -- real model ---------------------------------------------------------------------------


@pytest.mark.slow
def test_llm_judge_real_smollm2():
    from pathlib import Path

    from larpo.cli import _load_pairs, pairwise_accuracy

    judge = registry("reranker").build("llm-judge", {"device": "cpu", "batch_size": 16})
    rows = _load_pairs(str(Path(__file__).parent / "data" / "judge_pairs.jsonl"))
    result = pairwise_accuracy(judge, rows)
    assert result["pairs"] == 16
    assert result["statuses"] == {"ok": 32}
    assert result["accuracy"] >= ACCURACY_FLOOR

    batched = rewards(judge.score([PROMPT] * 3, candidates(RESPONSES)))
    judge.cache = None
    single = [judge.score([PROMPT], [candidate(text)])[0].reward for text in RESPONSES]
    assert batched == pytest.approx(single, abs=1e-3)
