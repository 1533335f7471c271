"""End to end on the real packaged SmolLM2-135M-Instruct (slow, but run in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from larpo.atomic import read_json
from larpo.build import build_engine
from larpo.plugins import get_host, registry
from larpo.spec import apply_overrides, load_yaml, validate_spec
from larpo.types import Prompt

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return registry("retriever").build("hf-causal-lm", {"model": "smollm2-135m-instruct"})


def test_packaged_model_converted_once(smollm2_path):
    folder = Path(smollm2_path)
    assert (folder / "model.safetensors").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()


def test_real_model_answers_and_scores_consistently(smollm2):
    prompt = Prompt(id="q", text="State the final answer to the following arithmetic problem: 2 + 3 =")
    greedy = smollm2.sample([prompt], num_samples=1, temperature=0.0, top_p=1.0, max_new_tokens=24, seed=0)[0][0]
    assert greedy.text.strip()
    assert greedy.finished
    with torch.no_grad():
        rescored = smollm2.sequence_logps([prompt], [greedy.token_ids])
    # Generation (left padding, KV cache) and scoring (right padding, one pass) agree.
    assert abs(float(rescored[0]) - greedy.behaviour_logps) < 0.05
    assert greedy.behaviour_logps < 0


def test_real_model_one_round(tmp_path):
    data = apply_overrides(
        load_yaml(QUICKSTART),
        [
            "rounds.count=1",
            "rounds.max_new_tokens=16",
            "data.train_size=6",
            "data.heldout_size=4",
            "optimization.epochs=1",
            "evaluation.pass_k=2",
            f"output_dir={tmp_path / 'run'}",
        ],
    )
    spec = validate_spec(data, get_host().registries)
    history = build_engine(spec).run()
    assert [row["round"] for row in history] == [0, 1]
    assert 0.0 <= history[1]["eval/greedy_accuracy"] <= 1.0
    assert history[1]["pool/candidates"] == 6 * 4
    checkpoint = tmp_path / "run" / "round-001" / "checkpoint"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert read_json(checkpoint / "adapter_config.json")["r"] == 16
