"""The plugin host: isolation of broken plugins, duplicates, unknown hooks, environment variables, CLI, schema.

A broken third-party distribution is a folder with a ``*.dist-info`` (METADATA and
entry_points.txt) next to a module that raises. importlib.metadata finds it once the
folder is on ``sys.path`` (in-process) or ``PYTHONPATH`` (subprocess).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_tiny_model

import larpo
from larpo import hookimpl, hookspecs
from larpo.engine import Engine
from larpo.plugins import PluginError, PluginHost, PluginRecord, get_host, registry
from larpo.registry import RegistrationError, Registry, StrictParams
from larpo.spec import (
    EvaluationSpec,
    LoraSpec,
    OptimizationSpec,
    RoundsSpec,
    SpecError,
    apply_overrides,
    load_yaml,
    plugin_json_schema,
    spec_json_schema,
    validate_spec,
)
from larpo.types import Candidate, Prompt, PromptSplits, Score

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"
LIFECYCLE_HOOKS = [
    "larpo_round_start",
    "larpo_after_sample",
    "larpo_after_rerank",
    "larpo_after_mine",
    "larpo_optimizer_step",
    "larpo_checkpoint",
    "larpo_metrics",
    "larpo_round_end",
]


# -- helpers -------------------------------------------------------------------


def make_distribution(
    root: Path, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """Write an installed-looking distribution (dist-info plus modules) into ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[larpo]", *(f"{ep} = {module}" for ep, module in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    return root


BROKEN_AT_IMPORT = 'raise RuntimeError("sparkle needs a GPU driver that is not installed")\n'


@pytest.fixture()
def broken_dist(tmp_path) -> Path:
    """A distribution whose plugin ``sparkle-reranker`` raises when imported."""
    return make_distribution(
        tmp_path / "site",
        "larpo-sparkle",
        "0.3.0",
        {"sparkle-reranker": "larpo_sparkle"},
        {"larpo_sparkle": BROKEN_AT_IMPORT},
    )


@pytest.fixture()
def on_sys_path(monkeypatch):
    """Put a folder on sys.path so that importlib.metadata finds its distributions."""

    def add(folder: Path) -> None:
        monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()

    return add


def run_cli(*args: str, pythonpath: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("LARPO_")}
    environment.update(env)
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "larpo.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=pythonpath or Path.cwd(),
    )


@pytest.fixture()
def clean_env(monkeypatch):
    for key in ("LARPO_PLUGINS", "LARPO_STRICT_PLUGINS", "LARPO_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


class ToyParams(StrictParams):
    reward: float = 1.0


class ToyReranker:
    def __init__(self, params: ToyParams) -> None:
        self.params = params

    def score(self, prompts, responses):
        return [Score(self.params.reward) for _ in responses]


def reranker_plugin(name: str, then_raise: bool = False) -> object:
    """A plugin object that registers reranker ``name`` and optionally raises afterwards."""

    class Plugin:
        @hookimpl
        def larpo_register_rerankers(self, register):
            register(name, ToyReranker, ToyParams, summary="toy")
            if then_raise:
                raise ValueError("configuration file ~/.toyrc is missing")

    return Plugin()


def record(name: str, distribution: str = "toy-dist") -> PluginRecord:
    return PluginRecord(name=name, distribution=distribution, version="1.0", entry_point=f"{name.replace('-', '_')}")


# -- isolation of broken plugins --------------------------------------------------


def test_cli_lists_broken_plugin_and_the_rest(broken_dist):
    result = run_cli("plugins", "--json", pythonpath=broken_dist)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    broken = rows["sparkle-reranker"]
    assert broken["status"] == "failed to import"
    assert broken["distribution"] == "larpo-sparkle"
    assert broken["version"] == "0.3.0"
    assert "RuntimeError: sparkle needs a GPU driver" in broken["error"]
    assert rows["losses"]["status"] == "ok"
    assert "contrastive" in [component["name"] for component in rows["losses"]["components"]]
    example = rows["length-penalty"]
    assert example["status"] == "ok"
    assert example["distribution"] == "larpo-length-penalty"
    assert example["kinds"] == ["reranker"]
    assert example["hooks"] == ["larpo_register_rerankers"]
    assert "Traceback" not in result.stderr


def test_cli_table_shows_failure(broken_dist):
    result = run_cli("plugins", pythonpath=broken_dist)
    assert result.returncode == 0, result.stderr
    assert "sparkle-reranker" in result.stdout
    assert "failed to import" in result.stdout
    assert "length-penalty" in result.stdout
    assert "plugin 'sparkle-reranker' from larpo-sparkle 0.3.0 failed to import" in result.stderr


def test_cli_validate_names_broken_plugin(broken_dist):
    result = run_cli("validate", str(QUICKSTART), "--set", "reranker.plugin=sparkle", pythonpath=broken_dist)
    assert result.returncode == 2
    line = next(line for line in result.stderr.splitlines() if line.strip().startswith("reranker.plugin:"))
    assert "unknown reranker plugin 'sparkle'" in line
    assert "plugin 'sparkle-reranker' from larpo-sparkle 0.3.0 failed to import" in line
    assert "RuntimeError: sparkle needs a GPU driver" in line
    assert "Traceback" not in result.stderr


def test_cli_validate_unaffected_by_broken_plugin(broken_dist):
    result = run_cli("validate", str(QUICKSTART), pythonpath=broken_dist)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_strict_mode_makes_failure_fatal(broken_dist):
    result = run_cli("plugins", pythonpath=broken_dist, LARPO_STRICT_PLUGINS="1")
    assert result.returncode == 2
    assert "error: plugin 'sparkle-reranker' from larpo-sparkle 0.3.0 failed to import" in result.stderr
    assert "Traceback" not in result.stderr


def test_strict_mode_in_process(clean_env, broken_dist, on_sys_path):
    on_sys_path(broken_dist)
    clean_env.setenv("LARPO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="sparkle-reranker"):
        PluginHost().load_entry_points()


def test_failure_in_register_hook_withdraws_components(clean_env):
    host = PluginHost()
    host.add_plugin(reranker_plugin("toy", then_raise=True), record("toy-plugin"))
    failed = host.records["toy-plugin"]
    assert failed.status == "failed to register"
    assert "ValueError: configuration file ~/.toyrc is missing" in failed.error
    assert "toy" not in host.registries["reranker"]
    assert failed.components == []
    assert host.failure_for("reranker", "toy") is failed
    message = host.registries["reranker"].unknown_message("toy")
    assert "plugin 'toy-plugin' from toy-dist 1.0 failed to register" in message


def test_spec_error_names_failed_plugin(clean_env, on_sys_path, broken_dist):
    on_sys_path(broken_dist)
    host = PluginHost()
    host.load_entry_points()
    data = apply_overrides(load_yaml(QUICKSTART), ["reranker.plugin=sparkle-reranker"])
    with pytest.raises(SpecError) as caught:
        validate_spec(data, host.registries)
    errors = dict(caught.value.errors)
    assert "failed to import: RuntimeError" in errors["reranker.plugin"]
    assert "Did you mean" not in errors["reranker.plugin"]


def test_unrelated_unknown_name_has_no_failure_note(clean_env, on_sys_path, broken_dist):
    on_sys_path(broken_dist)
    host = PluginHost()
    host.load_entry_points()
    message = host.registries["miner"].unknown_message("rnak")
    assert "failed" not in message
    assert "Did you mean 'rank'?" in message


# -- registration rules -------------------------------------------------------------


def test_duplicate_name_names_both_owners(clean_env):
    host = PluginHost()
    host.add_plugin(reranker_plugin("same"), record("first-plugin", "first-dist"))
    host.add_plugin(reranker_plugin("same"), record("second-plugin", "second-dist"))
    assert host.records["first-plugin"].status == "ok"
    second = host.records["second-plugin"]
    assert second.status == "failed to register"
    assert "duplicate reranker name 'same'" in second.error
    assert "'first-plugin' (first-dist)" in second.error
    assert "'second-plugin' (second-dist)" in second.error
    assert host.registries["reranker"].get("same").plugin == "first-plugin"


def test_duplicate_of_builtin_rejected_by_registry():
    with pytest.raises(RegistrationError, match="registered by plugin 'rank-miner'"):
        registry("miner").add("rank", ToyReranker, ToyParams, plugin="mine", distribution="my-dist")


def test_registration_records_distribution_and_version():
    entry = registry("reranker").get("length-penalty")
    assert entry.plugin == "length-penalty"
    assert entry.distribution == "larpo-length-penalty"
    assert entry.version == "0.1.0"
    assert registry("loss").get("contrastive").distribution == "larpo"


def test_builtin_plugins_record_their_hooks():
    records = get_host().records
    assert records["hf-causal-lm"].hooks == ["larpo_register_retrievers"]
    assert records["reasoning-gym"].hooks == ["larpo_register_prompt_sources", "larpo_register_rerankers"]
    assert records["reasoning-gym"].kinds == ["reranker", "prompts"]
    assert records["rank-miner"].hooks == ["larpo_register_miners"]
    assert records["losses"].hooks == ["larpo_register_losses"]


def test_params_model_must_forbid_extra_keys():
    from pydantic import BaseModel

    class Loose(BaseModel):
        reward: float = 1.0

    with pytest.raises(RegistrationError, match="extra='forbid'"):
        Registry("reranker").add("loose", ToyReranker, Loose)


def test_misspelled_hook_is_rejected(clean_env):
    class Misspelled:
        @hookimpl
        def larpo_round_strat(self, round_index):
            raise AssertionError("a rejected plugin's hook must never run")

        @hookimpl
        def larpo_register_rerankers(self, register):
            register("misspelled", ToyReranker, ToyParams)

    host = PluginHost()
    plugin = Misspelled()
    host.add_plugin(plugin, record("typo-plugin"))
    failed = host.records["typo-plugin"]
    assert failed.status == "failed to register"
    assert "plugin 'typo-plugin' implements unknown hook 'larpo_round_strat'" in failed.error
    assert "Did you mean 'larpo_round_start'?" in failed.error
    assert "misspelled" not in host.registries["reranker"]
    assert not host.pm.is_registered(plugin)
    host.hook.larpo_round_start(round_index=1, run_dir="unused")


def test_hook_with_unknown_argument_is_rejected(clean_env):
    class WrongArgument:
        @hookimpl
        def larpo_round_end(self, round_index, metrics, loss):
            return None

    host = PluginHost()
    host.add_plugin(WrongArgument(), record("wrong-argument"))
    failed = host.records["wrong-argument"]
    assert failed.status == "failed to register"
    assert "loss" in failed.error


# -- environment variables ------------------------------------------------------------


def test_allow_list_loads_only_named_entry_points(clean_env):
    clean_env.setenv("LARPO_PLUGINS", "losses, length-penalty")
    host = PluginHost()
    host.load_entry_points()
    assert set(host.records) == {"losses", "length-penalty"}
    assert host.registries["reranker"].names() == ["length-penalty"]
    assert "contrastive" in host.registries["loss"]
    assert len(host.registries["miner"]) == 0


def test_allow_list_skips_broken_plugin(clean_env, on_sys_path, broken_dist):
    on_sys_path(broken_dist)
    clean_env.setenv("LARPO_PLUGINS", "rank-miner")
    host = PluginHost()
    host.load_entry_points()
    assert list(host.records) == ["rank-miner"]
    assert host.failed_plugins() == []


def test_allow_list_warns_about_unknown_names(clean_env, caplog):
    clean_env.setenv("LARPO_PLUGINS", "losses,lossses")
    with caplog.at_level(logging.WARNING, logger="larpo.plugins"):
        PluginHost().load_entry_points()
    assert "LARPO_PLUGINS names entry points that are not installed: lossses" in caplog.text


def test_allow_list_through_cli():
    result = run_cli("plugins", "--json", LARPO_PLUGINS="rank-miner")
    assert result.returncode == 0, result.stderr
    assert [row["name"] for row in json.loads(result.stdout)] == ["rank-miner"]


def test_trace_logs_hook_calls_and_results(clean_env, caplog):
    clean_env.setenv("LARPO_TRACE_PLUGINS", "1")

    class Counter:
        @hookimpl
        def larpo_round_start(self, round_index, run_dir):
            return f"started {round_index}"

        @hookimpl
        def larpo_register_miners(self, register):
            return None

    host = PluginHost()
    with caplog.at_level(logging.INFO, logger="larpo.plugins"):
        host.add_plugin(Counter(), record("counter"))
        host.hook.larpo_round_start(round_index=3, run_dir="runs/x")
    assert "larpo_register_miners in plugin 'counter' called with register=" in caplog.text
    assert "larpo_round_start(round_index=3, run_dir='runs/x') calls ['counter']" in caplog.text
    assert "larpo_round_start returned ['started 3']" in caplog.text


def test_trace_off_by_default(clean_env, caplog):
    host = PluginHost()
    with caplog.at_level(logging.INFO, logger="larpo.plugins"):
        host.hook.larpo_round_start(round_index=1, run_dir="runs/x")
    assert "hook trace" not in caplog.text


def test_trace_through_cli_keeps_json_clean():
    result = run_cli("plugins", "--json", LARPO_TRACE_PLUGINS="1", LARPO_PLUGINS="losses")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["name"] == "losses"
    assert "hook trace: larpo_register_losses in plugin 'losses' called with register=" in result.stderr
    assert "registered ['loss:contrastive'" in result.stderr


# -- catalogue and schema -------------------------------------------------------------


def test_available_lists_catalogue_entries_not_loaded():
    result = run_cli("plugins", "--available", "--json", LARPO_PLUGINS="losses")
    assert result.returncode == 0, result.stderr
    available = {(item["kind"], item["name"]) for item in json.loads(result.stdout)}
    assert ("miner", "rank") in available
    assert ("reranker", "length-penalty") in available
    assert ("loss", "contrastive") not in available


def test_available_is_empty_when_everything_installed():
    result = run_cli("plugins", "--available")
    assert result.returncode == 0, result.stderr
    assert "Every component in the plugin catalogue is installed." in result.stdout


def collect_refs(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.append(value)
            else:
                collect_refs(value, found)
    elif isinstance(node, list):
        for item in node:
            collect_refs(item, found)
    return found


def test_schema_has_one_option_per_component():
    host = get_host()
    schema = spec_json_schema(host.registries)
    for field_name, kind in (("retriever", "retriever"), ("data", "prompts"), ("reranker", "reranker")):
        assert schema["properties"][field_name]["$ref"] == f"#/$defs/{kind}-component"
    for kind, kind_registry in host.registries.items():
        options = schema["$defs"][f"{kind}-component"]["oneOf"]
        assert [option["properties"]["plugin"]["const"] for option in options] == kind_registry.names()
        for option in options:
            assert option["additionalProperties"] is False
            assert option["required"][0] == "plugin"
    assert "Component" not in schema["$defs"]
    for ref in collect_refs(schema, []):
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref


def test_schema_of_example_plugin():
    schema = plugin_json_schema(get_host().registries, "length-penalty")
    (option,) = schema["anyOf"]
    assert option["title"] == "reranker length-penalty"
    assert set(option["properties"]) == {"plugin", "base", "per_token", "free_tokens", "max_penalty"}
    assert option["properties"]["per_token"]["minimum"] == 0
    assert option["required"] == ["plugin", "base"]


def test_schema_of_name_in_two_kinds():
    schema = plugin_json_schema(get_host().registries, "reasoning-gym")
    assert [option["title"] for option in schema["anyOf"]] == ["reranker reasoning-gym", "prompts reasoning-gym"]


def test_cli_schema_unknown_plugin():
    result = run_cli("schema", "--plugin", "length-penalti")
    assert result.returncode == 2
    assert "Did you mean 'length-penalty'?" in result.stderr


def test_cli_schema_prints_json():
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "length-penalty" in json.dumps(schema["$defs"]["reranker-component"])


# -- the example plugin and lifecycle hooks in a run ------------------------------------


def test_example_plugin_validates_in_spec():
    data = apply_overrides(
        load_yaml(QUICKSTART),
        ["reranker.plugin=length-penalty", "reranker.base={plugin: reasoning-gym}", "reranker.per_token=0.01"],
    )
    spec = validate_spec(data, get_host().registries)
    assert spec.reranker.params() == {"base": {"plugin": "reasoning-gym"}, "per_token": 0.01}


def test_example_plugin_spec_errors_have_paths():
    data = apply_overrides(
        load_yaml(QUICKSTART),
        [
            "reranker.plugin=length-penalty",
            "reranker.base={plugin: reasoning-gym, extrct: auto}",
            "reranker.per_tokn=0.01",
        ],
    )
    with pytest.raises(SpecError) as caught:
        validate_spec(data, get_host().registries)
    errors = dict(caught.value.errors)
    assert "Did you mean 'extract'?" in errors["reranker.base.extrct"]
    assert "Did you mean 'per_token'?" in errors["reranker.per_tokn"]


class ChecksumParams(StrictParams):
    modulus: int = 3


class ChecksumReranker:
    """Rewards a response by the sum of its token ids modulo ``modulus``: arbitrary, but spread."""

    def __init__(self, params: ChecksumParams) -> None:
        self.modulus = params.modulus

    def score(self, prompts, responses):
        return [Score(float(sum(r.token_ids) % self.modulus)) for r in responses]


class ChecksumPlugin:
    @hookimpl
    def larpo_register_rerankers(self, register):
        register("test-checksum", ChecksumReranker, ChecksumParams, summary="test reranker")


@pytest.fixture()
def checksum_reranker():
    """Register ``test-checksum`` in the process-wide host for one test, then withdraw it."""
    host = get_host()
    plugin = ChecksumPlugin()
    host.add_plugin(plugin, PluginRecord("test-checksum", "<tests>", "", "tests.test_plugins"))
    yield "test-checksum"
    host.registries["reranker"].remove("test-checksum")
    host.pm.unregister(plugin)
    del host.records["test-checksum"]


class Recorder:
    """A lifecycle plugin that records every hook call's name and keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def _record(self, name: str, **kwargs) -> None:
        self.calls.append((name, kwargs))

    @hookimpl
    def larpo_round_start(self, round_index, run_dir):
        self._record("larpo_round_start", round_index=round_index, run_dir=run_dir)

    @hookimpl
    def larpo_after_sample(self, round_index, candidates):
        self._record("larpo_after_sample", round_index=round_index, rewards=[c.reward for c in candidates])

    @hookimpl
    def larpo_after_rerank(self, round_index, candidates):
        self._record("larpo_after_rerank", round_index=round_index, candidates=list(candidates))

    @hookimpl
    def larpo_after_mine(self, round_index, lists, report):
        self._record("larpo_after_mine", round_index=round_index, lists=len(lists), report=report)

    @hookimpl
    def larpo_optimizer_step(self, round_index, step, metrics):
        self._record("larpo_optimizer_step", round_index=round_index, step=step, loss=metrics["loss"])

    @hookimpl
    def larpo_checkpoint(self, round_index, path):
        self._record("larpo_checkpoint", round_index=round_index, path=path)

    @hookimpl
    def larpo_metrics(self, round_index, metrics):
        self._record("larpo_metrics", round_index=round_index)

    @hookimpl
    def larpo_round_end(self, round_index, metrics):
        self._record("larpo_round_end", round_index=round_index)


def test_example_plugin_in_engine_run(tokenizer, tmp_path, checksum_reranker, clean_env, on_sys_path, broken_dist):
    # a host with every installed plugin, one broken plugin and the recorder
    on_sys_path(broken_dist)
    host = PluginHost()
    host.load_entry_points()
    assert [record.name for record in host.failed_plugins()] == ["sparkle-reranker"]
    recorder = Recorder()
    host.add_plugin(recorder, PluginRecord("recorder", "<tests>", "", "tests.test_plugins"))

    reranker = host.registries["reranker"].build(
        "length-penalty", {"base": {"plugin": checksum_reranker}, "per_token": 0.01, "free_tokens": 2}
    )
    prompts = [Prompt(id=f"p{i}", text=f"Count to {i + 2}.") for i in range(5)]
    retriever = host.registries["retriever"].get("hf-causal-lm").factory.from_objects(
        make_tiny_model(tokenizer), tokenizer
    )
    engine = Engine(
        retriever=retriever,
        reranker=reranker,
        miner=host.registries["miner"].build("rank", {"num_negatives": 2}),
        loss=larpo.losses.get("contrastive", beta=0.5),
        prompts=PromptSplits(train=prompts[:3], heldout=prompts[3:]),
        run_dir=tmp_path / "run",
        rounds=RoundsSpec(count=1, samples_per_prompt=4, max_new_tokens=6, temperature=1.5),
        optimization=OptimizationSpec(lr=1e-2, epochs=1, batch_size=6, micro_batch_size=3, lora=LoraSpec(r=4, alpha=8)),
        evaluation=EvaluationSpec(pass_k=0, success_threshold=2.0),
        seed=3,
        hook=host.hook,
    )
    history = engine.run()

    assert [row["round"] for row in history] == [0, 1]
    names = [name for name, _ in recorder.calls]
    for hook_name in LIFECYCLE_HOOKS:
        assert hook_name in names, hook_name
    first = {name: names.index(name) for name in LIFECYCLE_HOOKS}
    assert first["larpo_metrics"] < first["larpo_round_start"]  # round 0's metrics come first
    ordered = [first[name] for name in LIFECYCLE_HOOKS if name != "larpo_metrics"]
    assert ordered == sorted(ordered)
    sampled = dict(recorder.calls)["larpo_after_sample"]
    assert set(sampled["rewards"]) == {None}

    # rewards are the checksum minus 0.01 per token beyond 2 tokens
    reranked = dict(recorder.calls)["larpo_after_rerank"]["candidates"]
    assert len(reranked) == 3 * 4
    for candidate in reranked:
        expected = float(sum(candidate.token_ids) % 3) - 0.01 * max(0, candidate.num_tokens - 2)
        assert candidate.reward == pytest.approx(expected)
    steps = [kwargs for name, kwargs in recorder.calls if name == "larpo_optimizer_step"]
    assert steps and steps[0]["step"] == 1
    (checkpoint,) = [kwargs for name, kwargs in recorder.calls if name == "larpo_checkpoint"]
    assert Path(checkpoint["path"]).is_dir()
    assert [kwargs["round_index"] for name, kwargs in recorder.calls if name == "larpo_metrics"] == [0, 1]


def test_example_reranker_scores_from_python():
    from larpo_length_penalty import LengthPenaltyReranker

    class Constant:
        def score(self, prompts, responses):
            return [Score(1.0, "ok") for _ in responses]

    reranker = LengthPenaltyReranker(Constant(), per_token=0.1, max_penalty=0.25)
    response = Candidate("c", "p", "text", [1, 2, 3], True, 0.0, 1, 1.0)
    (score,) = reranker.score([Prompt("p", "question")], [response])
    assert score.reward == pytest.approx(1.0 - 0.25)  # 3 tokens cost 0.3, capped at 0.25


def test_every_hook_spec_is_exercised_here():
    specs = sorted(name for name in vars(hookspecs) if name.startswith("larpo_"))
    registration = sorted(name for name in specs if name.startswith("larpo_register_"))
    assert sorted(LIFECYCLE_HOOKS) == sorted(set(specs) - set(registration))
