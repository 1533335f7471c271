"""The whole round loop on a tiny random model: phases, outputs, resume and the Python API."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_model

import larpo
from larpo.atomic import read_json, read_jsonl
from larpo.engine import Engine
from larpo.plugins import registry
from larpo.spec import EvaluationSpec, LoraSpec, OptimizationSpec, RoundsSpec
from larpo.types import Prompt, PromptSplits, Score


class ChecksumReranker:
    """Rewards a response by the sum of its token ids modulo 3: arbitrary, but spread and deterministic."""

    def score(self, prompts, responses):
        return [Score(float(sum(r.token_ids) % 3)) for r in responses]


def make_prompts(train: int = 4, heldout: int = 3) -> PromptSplits:
    prompts = [Prompt(id=f"p{i}", text=f"Count to {i + 2}.") for i in range(train + heldout)]
    return PromptSplits(train=prompts[:train], heldout=prompts[train:])


class StopAfter:
    """A lifecycle plugin that raises at one hook, imitating a killed process."""

    def __init__(self, hook_name: str, round_index: int) -> None:
        self.hook_name = hook_name
        self.round_index = round_index

    def __getattr__(self, name):
        def hook(**kwargs):
            if name == self.hook_name and kwargs.get("round_index") == self.round_index:
                raise KeyboardInterrupt(f"stopped at {name}")
            return []

        return hook


def make_engine(tokenizer, run_dir, rounds: int = 2, hook=None, lora: bool = True) -> Engine:
    retriever = registry("retriever").get("hf-causal-lm").factory.from_objects(make_tiny_model(tokenizer), tokenizer)
    return Engine(
        retriever=retriever,
        reranker=ChecksumReranker(),
        miner=registry("miner").build("rank", {"num_negatives": 2}),
        loss=larpo.losses.get("contrastive", beta=0.5),
        prompts=make_prompts(),
        run_dir=run_dir,
        rounds=RoundsSpec(count=rounds, samples_per_prompt=4, max_new_tokens=8, temperature=[1.5, 1.2]),
        optimization=OptimizationSpec(
            lr=1e-2, epochs=1, batch_size=6, micro_batch_size=3, lora=LoraSpec(r=4, alpha=8) if lora else None
        ),
        evaluation=EvaluationSpec(pass_k=2, success_threshold=2.0),
        seed=5,
        hook=hook,
    )


def trainable_state(engine: Engine) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in engine.ctx.retriever.model.named_parameters() if v.requires_grad}


def test_engine_runs_every_phase(tokenizer, tmp_path):
    engine = make_engine(tokenizer, tmp_path / "run")
    before = trainable_state(engine)  # LoRA is not applied yet: the full model
    history = engine.run()

    assert [row["round"] for row in history] == [0, 1, 2]
    for row in history:
        assert 0.0 <= row["eval/greedy_accuracy"] <= 1.0
        assert row["eval/pass@1"] <= row["eval/pass@2"]
    assert history[1]["temperature"] == 1.5
    assert history[2]["temperature"] == 1.2
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert manifest["status"] == "finished"
    for round_index in (1, 2):
        for phase in ("sample", "rerank", "pool", "mine", "optimize", "evaluate"):
            assert manifest["phases"][f"{round_index}/{phase}"] == "done"
        folder = tmp_path / "run" / f"round-{round_index:03d}"
        assert (folder / "checkpoint" / "adapter_model.safetensors").is_file()
        assert (folder / "checkpoint" / "tokenizer.json").is_file()
        candidates = list(read_jsonl(folder / "candidates.jsonl"))
        assert len(candidates) == 4 * 4
        assert all(c["reward"] is not None for c in candidates)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["round"] == 0
    assert before  # the base model had trainable weights before LoRA froze them
    lora_weights = [v for k, v in engine.ctx.retriever.model.named_parameters() if "lora_B" in k]
    assert any(float(w.detach().abs().sum()) > 0 for w in lora_weights)  # lora_B starts at zero, so training moved it


@pytest.mark.parametrize("hook_name", ["larpo_after_sample", "larpo_after_mine", "larpo_checkpoint"])
def test_resume_matches_uninterrupted(tokenizer, tmp_path, hook_name):
    full = make_engine(tokenizer, tmp_path / "full")
    full_history = full.run()

    stopped = make_engine(tokenizer, tmp_path / "resumed", hook=StopAfter(hook_name, 2))
    with pytest.raises(KeyboardInterrupt):
        stopped.run()
    resumed = make_engine(tokenizer, tmp_path / "resumed")
    resumed_history = resumed.run(resume=True)

    full_state = trainable_state(full)
    resumed_state = trainable_state(resumed)
    assert full_state.keys() == resumed_state.keys()
    for key in full_state:
        assert torch.allclose(full_state[key], resumed_state[key], atol=1e-6), key
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(full_history) == strip(resumed_history)
    ids = [c["id"] for c in read_jsonl(tmp_path / "resumed" / "round-002" / "candidates.jsonl")]
    assert len(ids) == len(set(ids)) == 16


def test_full_finetuning_changes_weights(tokenizer, tmp_path):
    engine = make_engine(tokenizer, tmp_path / "run", rounds=1, lora=False)
    before = trainable_state(engine)
    engine.run()
    after = trainable_state(engine)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "run" / "round-001" / "checkpoint" / "model.safetensors").is_file()


def test_existing_run_dir_is_rejected(tokenizer, tmp_path):
    from larpo.engine.loop import RunDirError

    make_engine(tokenizer, tmp_path / "run", rounds=1).run()
    with pytest.raises(RunDirError, match="--resume"):
        make_engine(tokenizer, tmp_path / "run", rounds=1).run()
