"""Spec loading, overrides and validation, through Python and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from larpo.plugins import get_host
from larpo.spec import SpecError, apply_overrides, load_yaml, validate_spec

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"


def errors_of(data) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        validate_spec(data, get_host().registries)
    return dict(caught.value.errors)


def test_quickstart_is_valid():
    spec = validate_spec(load_yaml(QUICKSTART), get_host().registries)
    assert spec.rounds.count >= 3
    assert spec.rounds.samples_per_prompt == 4
    assert spec.retriever.plugin == "hf-causal-lm"


def test_misspelled_nested_key_suggests_fix():
    data = apply_overrides(load_yaml(QUICKSTART), ["rounds.samples_per_promt=3"])
    errors = errors_of(data)
    assert "rounds.samples_per_promt" in errors
    assert "Did you mean 'samples_per_prompt'?" in errors["rounds.samples_per_promt"]


def test_misspelled_plugin_param_suggests_fix():
    data = apply_overrides(load_yaml(QUICKSTART), ["miner.num_negative=2"])
    errors = errors_of(data)
    assert "Did you mean 'num_negatives'?" in errors["miner.num_negative"]


def test_misspelled_top_level_key():
    data = load_yaml(QUICKSTART)
    data["optimisation"] = data.pop("optimization")
    errors = errors_of(data)
    assert "Did you mean 'optimization'?" in errors["optimisation"]


def test_unknown_plugin_lists_installed():
    data = apply_overrides(load_yaml(QUICKSTART), ["loss.plugin=contrastiv", "miner.plugin=nope"])
    errors = errors_of(data)
    assert "Did you mean 'contrastive'?" in errors["loss.plugin"]
    assert "Installed loss plugins:" in errors["loss.plugin"]
    assert "rank" in errors["miner.plugin"]


def test_every_error_reported_at_once():
    data = apply_overrides(
        load_yaml(QUICKSTART), ["rounds.count=0", "optimization.lr=-1", "data.train_sizee=3", "rounds.temperature=0"]
    )
    errors = errors_of(data)
    assert {"rounds.count", "optimization.lr", "data.train_sizee", "rounds.temperature"} <= set(errors)


def test_reference_none_needs_reference_free_loss():
    data = apply_overrides(load_yaml(QUICKSTART), ["reference.mode=none"])
    errors = errors_of(data)
    assert "reference.mode" in errors
    assert "contrastive" in errors["reference.mode"]


def test_overrides_parse_yaml_values():
    data = apply_overrides({"rounds": {"count": 3}}, ["rounds.count=5", "rounds.temperature=[1.0, 0.7]", "seed=7"])
    assert data == {"rounds": {"count": 5, "temperature": [1.0, 0.7]}, "seed": 7}


def test_override_without_equals_is_rejected():
    with pytest.raises(SpecError, match="KEY=VALUE"):
        apply_overrides({}, ["rounds.count"])


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_yaml(path)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "larpo.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_validate_reports_without_traceback():
    result = run_cli("validate", str(QUICKSTART), "--set", "rounds.samples_per_promt=3", "--set", "loss.plugin=x")
    assert result.returncode == 2
    assert "rounds.samples_per_promt" in result.stderr
    assert "Did you mean 'samples_per_prompt'?" in result.stderr
    assert "Installed loss plugins:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_validate_missing_file():
    result = run_cli("validate", "does-not-exist.yaml")
    assert result.returncode == 2
    assert "spec file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_validate_ok():
    result = run_cli("validate", str(QUICKSTART))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_miner_and_loss_positives_must_agree():
    data = apply_overrides(load_yaml(QUICKSTART), ["miner.num_positives=2"])
    errors = errors_of(data)
    assert "loss.num_positives" in errors
    fixed = apply_overrides(data, ["loss.num_positives=2"])
    assert validate_spec(fixed, get_host().registries).miner.params()["num_positives"] == 2
