"""Per-round ranking metrics, ``larpo eval`` and ``larpo generate`` on a tiny random model."""

from __future__ import annotations

import json
import math

import pytest
from conftest import make_tiny_model
from test_engine import make_engine

from larpo.atomic import read_json, read_jsonl
from larpo.cli import main
from larpo.engine.evaluate import ranking_metrics, win_rate_metrics
from larpo.plugins import registry
from larpo.types import Candidate

DATA = {
    "plugin": "reasoning-gym",
    "task": "chain_sum",
    "task_params": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
    "train_size": 3,
    "heldout_size": 3,
    "seed": 0,
}


def candidate(prompt_id: str, k: int, logps: float, reward: float) -> Candidate:
    return Candidate(f"{prompt_id}/{k}", prompt_id, f"text {k}", [k + 1], True, logps, 1, 1.0, reward=reward)


@pytest.fixture()
def spec_path(tmp_path, tokenizer):
    """A spec whose retriever is a tiny random Llama saved in a folder with the SmolLM2 tokenizer."""
    model_dir = tmp_path / "tiny-model"
    make_tiny_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    spec = {
        "retriever": {"plugin": "hf-causal-lm", "model": str(model_dir), "device": "cpu"},
        "data": DATA,
        "reranker": {"plugin": "reasoning-gym"},
        "miner": {"plugin": "rank", "num_negatives": 2},
        "loss": {"plugin": "contrastive", "beta": 0.5},
        "rounds": {"count": 1, "samples_per_prompt": 3, "max_new_tokens": 6, "temperature": 1.0},
        "optimization": {"lr": 1e-2, "epochs": 1, "batch_size": 3, "micro_batch_size": 3, "lora": {"r": 4, "alpha": 8}},
        "evaluation": {"pass_k": 3, "pass_k_rounds": "first-last"},
        "output_dir": str(tmp_path / "run"),
        "seed": 3,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))  # JSON is valid YAML
    return path


def test_ranking_metrics_hand_values():
    # Prompt a: policy order by logps is a/1 (-1), a/0 (-2), a/2 (-3) with rewards [1, 0, 0].
    #   Gains (reward - min) = [1, 0, 0] are ideal: NDCG@3 = 1. First relevant at rank 1: RR = 1.
    #   Kendall tau-b of logps [-2, -1, -3] against rewards [0, 1, 0]: pair (0, 1) is concordant
    #   (-2 < -1 and 0 < 1), (0, 2) is tied in rewards, (1, 2) is concordant (-1 > -3 and 1 > 0).
    #   C = 2, D = 0, t_y = 1: tau_b = 2 / sqrt(3 * 2).
    # Prompt b: policy order b/0 (-1), b/1 (-2), b/2 (-3) with rewards [0, 0, 1].
    #   DCG@3 = 1 / log2(4) = 0.5, IDCG@3 = 1: NDCG@3 = 0.5. RR = 1/3.
    #   Pair (0, 1) is tied in rewards, (0, 2) and (1, 2) are discordant: tau_b = -2 / sqrt(3 * 2).
    # Prompt c: rewards all 0, so NDCG and tau are undefined and c is left out of them; RR = 0.
    groups = [
        [candidate("a", 0, -2.0, 0.0), candidate("a", 1, -1.0, 1.0), candidate("a", 2, -3.0, 0.0)],
        [candidate("b", 0, -1.0, 0.0), candidate("b", 1, -2.0, 0.0), candidate("b", 2, -3.0, 1.0)],
        [candidate("c", 0, -1.0, 0.0), candidate("c", 1, -2.0, 0.0), candidate("c", 2, -3.0, 0.0)],
    ]
    metrics = ranking_metrics(groups, threshold=1.0)
    assert metrics["eval/ndcg@3"] == pytest.approx((1.0 + 0.5) / 2)
    assert metrics["eval/mrr"] == pytest.approx((1.0 + 1 / 3 + 0.0) / 3)
    assert metrics["eval/kendall_tau"] == pytest.approx((2 / math.sqrt(6) - 2 / math.sqrt(6)) / 2, abs=1e-12)
    assert metrics["eval/ranked_prompts"] == 2


def test_ranking_metrics_all_ties():
    groups = [[candidate("a", 0, -1.0, 0.5), candidate("a", 1, -2.0, 0.5)]]
    metrics = ranking_metrics(groups, threshold=1.0)
    assert "eval/ndcg@2" not in metrics
    assert "eval/kendall_tau" not in metrics
    assert metrics["eval/mrr"] == 0.0


def test_win_rate_against_file(tmp_path):
    baseline = tmp_path / "eval_greedy.jsonl"
    rows = [candidate("a", 0, -1.0, 0.0), candidate("b", 0, -1.0, 1.0)]
    baseline.write_text("".join(json.dumps(c.to_dict()) + "\n" for c in rows))
    # a: 1 > 0 wins, b: 1 = 1 ties, z: not in the baseline. (1 + 0.5) / 2 = 0.75.
    greedy = [candidate("a", 0, -1.0, 1.0), candidate("b", 0, -1.0, 1.0), candidate("z", 0, -1.0, 1.0)]
    assert win_rate_metrics(greedy, baseline) == {"eval/win_rate_vs_round0": 0.75}
    assert win_rate_metrics(greedy, tmp_path / "missing.jsonl") == {}


def test_engine_logs_ranking_metrics(tokenizer, tmp_path):
    history = make_engine(tokenizer, tmp_path / "run", rounds=1).run()
    for row in history:
        assert 0.0 <= row["eval/mrr"] <= 1.0
        assert -1.0 <= row.get("eval/kendall_tau", 0.0) <= 1.0
        assert 0.0 <= row.get("eval/ndcg@2", 0.0) <= 1.0
        assert math.isfinite(row["eval/kl_to_initial"])
    assert "eval/win_rate_vs_round0" not in history[0]
    assert 0.0 <= history[1]["eval/win_rate_vs_round0"] <= 1.0
    # Round 0 evaluates the initial model, so its KL estimate is numerical noise only.
    assert abs(history[0]["eval/kl_to_initial"]) < 1e-3


def test_eval_reproduces_run_metrics(spec_path, tmp_path, capsys):
    assert main(["run", str(spec_path)]) == 0
    run_row = read_json(tmp_path / "run" / "round-001" / "metrics.json")
    capsys.readouterr()

    output = tmp_path / "eval.json"
    checkpoint = tmp_path / "run" / "round-001" / "checkpoint"
    code = main(["eval", str(checkpoint), "--spec", str(spec_path), "--output", str(output)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == read_json(output)
    assert printed["round"] == 1
    assert printed["checkpoint"] == str(checkpoint)
    # Pass@3 is measured although pass_k_rounds is first-last and round 1 is the last.
    for key in ("eval/greedy_reward", "eval/greedy_length", "eval/pass@3", "eval/sample_reward"):
        assert printed[key] == pytest.approx(run_row[key], abs=1e-6), key
    assert printed["eval/win_rate_vs_round0"] == pytest.approx(run_row["eval/win_rate_vs_round0"])
    assert printed["eval/kl_to_initial"] == pytest.approx(run_row["eval/kl_to_initial"], abs=1e-3)
    # Nothing was written into the run folder.
    assert len(list(read_jsonl(tmp_path / "run" / "round-001" / "eval_greedy.jsonl"))) == 3


def test_eval_full_weights_outside_run(spec_path, tmp_path, tokenizer, capsys):
    checkpoint = tmp_path / "weights"
    make_tiny_model(tokenizer, seed=1).save_pretrained(checkpoint)
    responses = tmp_path / "responses"
    code = main(["eval", str(checkpoint), "--spec", str(spec_path), "--responses-dir", str(responses)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["round"] == 0
    assert "eval/pass@3" in printed
    # No run folder: no round 0 to compare with and no saved initial weights.
    assert "eval/win_rate_vs_round0" not in printed
    assert "eval/kl_to_initial" not in printed
    assert len(list(read_jsonl(responses / "eval_samples.jsonl"))) == 3 * 3


def test_eval_missing_checkpoint(spec_path, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nowhere"), "--spec", str(spec_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_generate_heldout_prompts(spec_path, capsys):
    code = main(["generate", "--spec", str(spec_path), "--best-of", "3", "--max-new-tokens", "4"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert len(row["rewards"]) == 3
        assert row["reward"] == max(row["rewards"])
        assert isinstance(row["response"], str)


def test_generate_prompts_file(spec_path, tmp_path, capsys):
    params = {key: value for key, value in DATA.items() if key != "plugin"}
    prompts = registry("prompts").build("reasoning-gym", params).load().heldout[:2]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in prompts))
    code = main(["generate", "--spec", str(spec_path), "--best-of", "2", "--prompts", str(path), "--seed", "1"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["prompt_id"] for row in rows] == [p.id for p in prompts]


def test_generate_rejects_greedy_best_of(spec_path, capsys):
    code = main(["generate", "--spec", str(spec_path), "--best-of", "2", "--temperature", "0", "--prompt", "Hi"])
    assert code == 2
    assert "temperature" in capsys.readouterr().err
