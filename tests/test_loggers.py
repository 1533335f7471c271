"""Metric loggers: registration, spec validation, a tiny engine run with jsonl, and tensorboard files."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_tiny_model

import larpo
from larpo.atomic import read_jsonl
from larpo.build import build_loggers
from larpo.engine import Engine
from larpo.plugins import get_host, registry
from larpo.spec import EvaluationSpec, LoraSpec, OptimizationSpec, RoundsSpec, SpecError, load_yaml, validate_spec
from larpo.types import Prompt, PromptSplits, Score

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"


class ChecksumReranker:
    """Rewards a response by the sum of its token ids modulo 3: arbitrary, but spread and deterministic."""

    def score(self, prompts, responses):
        return [Score(float(sum(r.token_ids) % 3)) for r in responses]


def spec_with_loggers(loggers):
    data = load_yaml(QUICKSTART)
    data["loggers"] = loggers
    return data


def spec_errors(data) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        validate_spec(data, get_host().registries)
    return dict(caught.value.errors)


def test_loggers_registered_by_larpo_register_loggers():
    host = get_host()
    names = registry("logger").names()
    assert "jsonl" in names
    assert "tensorboard" in names
    assert "larpo_register_loggers" in host.records["loggers"].hooks
    assert registry("logger").get("jsonl").plugin == "loggers"


def test_loggers_default_to_empty_list():
    spec = validate_spec(load_yaml(QUICKSTART), get_host().registries)
    assert spec.loggers == []


def test_misspelled_logger_key_has_dotted_path(tmp_path):
    errors = spec_errors(spec_with_loggers([{"plugin": "jsonl", "path": "a.jsonl"}, {"plugin": "jsonl", "pth": "x"}]))
    assert sorted(errors) == ["loggers.1.path", "loggers.1.pth"]  # path is required, pth is unknown
    assert "Did you mean 'path'?" in errors["loggers.1.pth"]


def test_unknown_logger_plugin_suggests_name():
    errors = spec_errors(spec_with_loggers([{"plugin": "tensorbord", "log_dir": "tb"}]))
    assert "Did you mean 'tensorboard'?" in errors["loggers.0.plugin"]


def test_logger_entry_without_plugin_is_invalid():
    errors = spec_errors(spec_with_loggers([{"path": "a.jsonl"}]))
    assert "loggers.0.plugin" in errors


def test_jsonl_logger_receives_engine_metrics(tokenizer, tmp_path):
    host = get_host()
    log_path = tmp_path / "logs" / "metrics.jsonl"
    spec = validate_spec(spec_with_loggers([{"plugin": "jsonl", "path": str(log_path)}]), host.registries)
    loggers = build_loggers(host, spec)
    try:
        factory = registry("retriever").get("hf-causal-lm").factory
        retriever = factory.from_objects(make_tiny_model(tokenizer), tokenizer)
        prompts = [Prompt(id=f"p{i}", text=f"Count to {i + 2}.") for i in range(6)]
        engine = Engine(
            retriever=retriever,
            reranker=ChecksumReranker(),
            miner=registry("miner").build("rank", {"num_negatives": 2}),
            loss=larpo.losses.get("contrastive", beta=0.5),
            prompts=PromptSplits(train=prompts[:4], heldout=prompts[4:]),
            run_dir=tmp_path / "run",
            rounds=RoundsSpec(count=1, samples_per_prompt=4, max_new_tokens=8, temperature=1.5),
            optimization=OptimizationSpec(
                lr=1e-2, epochs=1, batch_size=6, micro_batch_size=3, lora=LoraSpec(r=4, alpha=8)
            ),
            evaluation=EvaluationSpec(pass_k=2, success_threshold=2.0),
            seed=5,
            hook=host.hook,
        )
        history = engine.run()
    finally:
        build_loggers(host, validate_spec(load_yaml(QUICKSTART), host.registries))  # unregisters them

    assert len(loggers) == 1
    assert not host.pm.is_registered(loggers[0])
    rows = list(read_jsonl(log_path))
    round_rows = [row for row in rows if row["type"] == "round"]
    step_rows = [row for row in rows if row["type"] == "step"]
    assert [row["round"] for row in round_rows] == [0, 1]
    assert round_rows[1]["eval/greedy_accuracy"] == history[1]["eval/greedy_accuracy"]
    train_log = list(read_jsonl(tmp_path / "run" / "round-001" / "train_log.jsonl"))
    assert len(step_rows) == len(train_log)
    assert len(step_rows) >= 1
    assert [row["step"] for row in step_rows] == [row["step"] for row in train_log]
    assert step_rows[0]["loss"] == train_log[0]["loss"]


def test_tensorboard_logger_writes_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = registry("logger").build("tensorboard", {"log_dir": str(tmp_path / "tb")})
    first = {"eval/greedy_accuracy": 0.25, "mine/hint": "text", "seconds": {"evaluate": 2.0}}
    logger.larpo_metrics(round_index=0, metrics=first)
    logger.larpo_metrics(round_index=1, metrics={"eval/greedy_accuracy": 0.5, "mine/quantiles/margin": [0.1, 0.2]})
    logger.larpo_optimizer_step(round_index=1, step=1, metrics={"loss": 0.7, "round": 1})
    logger.larpo_optimizer_step(round_index=1, step=2, metrics={"loss": 0.6, "round": 1})
    logger.writer.close()

    event_files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(event_files) == 1
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert "eval/greedy_accuracy" in scalars
    assert "seconds/evaluate" in scalars
    assert "mine/hint" not in scalars
    accuracy = [(event.step, event.value) for event in events.Scalars("eval/greedy_accuracy")]
    assert accuracy == [(0, 0.25), (1, 0.5)]
    assert [event.step for event in events.Scalars("step/loss")] == [1, 2]


def test_tensorboard_missing_package_message(monkeypatch, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "tensorboard" else real_find_spec(name, *args)
    )
    with pytest.raises(ImportError, match=r"pip install tensorboard==2\.21\.0"):
        registry("logger").build("tensorboard", {"log_dir": str(tmp_path / "tb")})
