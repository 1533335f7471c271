"""The docs' code runs, and every hook spec is documented and tested.

A fenced block whose first line is ``# file: PATH`` is written to PATH in a temporary
folder; Python file blocks are then imported (test modules also have their ``test_*``
functions called). Every other ``python`` block is executed in order in one namespace,
with the temporary folder as the working directory.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

from larpo import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
FILE_MARKER = re.compile(r"^# file: (\S+)\n")


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """Return the (language, code) pairs of the fenced blocks of a Markdown file, in order."""
    return FENCE.findall(path.read_text(encoding="utf-8"))


def run_doc(path: Path, workdir: Path, monkeypatch) -> dict:
    """Execute a Markdown file's code as described in the module docstring; return the namespace."""
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    imported: list[str] = []
    for language, code in code_blocks(path):
        marker = FILE_MARKER.match(code)
        if marker:
            target = workdir / marker.group(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code, encoding="utf-8")
            if language == "python":
                imported.append(import_file(target, monkeypatch))
            continue
        if language == "python":
            exec(compile(code, f"{path.name}:block", "exec"), namespace)
    namespace["__imported__"] = imported
    return namespace


def import_file(target: Path, monkeypatch) -> str:
    """Import a written module (its folder goes on sys.path) and call its test functions."""
    monkeypatch.syspath_prepend(str(target.parent))
    name = target.stem
    monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module(name)
    if name.startswith("test_"):
        for test_name, function in inspect.getmembers(module, inspect.isfunction):
            if test_name.startswith("test_") and function.__module__ == name:
                function()
    return name


@pytest.fixture()
def plugin_env(monkeypatch):
    for key in ("LARPO_PLUGINS", "LARPO_STRICT_PLUGINS", "LARPO_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    yield monkeypatch
    for name in ("larpo_keyword_reward", "test_keyword_reward"):
        sys.modules.pop(name, None)


def test_writing_plugins_code_runs(tmp_path, plugin_env, capsys):
    namespace = run_doc(DOCS / "writing-plugins.md", tmp_path, plugin_env)
    assert namespace["__imported__"] == ["larpo_keyword_reward", "test_keyword_reward"]
    output = capsys.readouterr().out
    assert "keyword='seven'" in output
    assert "reranker.keywrd: unknown key 'keywrd'. Did you mean 'keyword'?" in output


def test_writing_plugins_pyproject_points_at_module(tmp_path, plugin_env):
    tomllib = pytest.importorskip("tomllib")  # in the standard library from Python 3.11
    run_doc(DOCS / "writing-plugins.md", tmp_path, plugin_env)
    pyproject = tomllib.loads((tmp_path / "larpo-keyword-reward" / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["larpo"]
    assert entry_points == {"keyword-reward": "larpo_keyword_reward"}
    assert (tmp_path / "larpo-keyword-reward" / "larpo_keyword_reward.py").is_file()
    assert pyproject["tool"]["setuptools"]["py-modules"] == ["larpo_keyword_reward"]


def test_python_api_code_runs(tmp_path, plugin_env, tokenizer):
    # the tokenizer fixture makes sure the packaged SmolLM2 folder exists before the doc resolves it
    namespace = run_doc(DOCS / "python-api.md", tmp_path, plugin_env)
    history = namespace["history"]
    assert [row["round"] for row in history] == [0, 1]
    assert (tmp_path / "runs" / "python-api" / "manifest.json").is_file()


def hook_names() -> list[str]:
    return sorted(name for name, value in vars(hookspecs).items() if name.startswith("larpo_") and callable(value))


def test_hookspecs_found():
    assert len(hook_names()) >= 13


@pytest.mark.parametrize("name", hook_names())
def test_hook_is_documented(name):
    reference = (DOCS / "hooks.md").read_text(encoding="utf-8")
    tutorial = (DOCS / "writing-plugins.md").read_text(encoding="utf-8")
    assert name in reference + tutorial, f"{name} is in neither docs/hooks.md nor docs/writing-plugins.md"
    arguments = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    assert f"{name}({arguments})" in reference, f"docs/hooks.md does not show {name}({arguments})"


@pytest.mark.parametrize("name", hook_names())
def test_hook_is_tested(name):
    test_files = [*(ROOT / "tests").glob("test_*.py"), *(ROOT / "plugins").glob("*/tests/test_*.py")]
    mentioned = [path.name for path in test_files if path.name != "test_docs.py" and name in path.read_text()]
    assert mentioned, f"no test file mentions {name}; add a test that exercises it"


@pytest.mark.parametrize("name", hook_names())
def test_hookspec_docstring_is_complete(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert "Fire" in doc, f"{name}: the docstring does not say when the hook fires"
    assert ":return:" in doc, f"{name}: the docstring does not say what the return value means"
    for argument in inspect.signature(getattr(hookspecs, name)).parameters:
        assert f":param {argument}:" in doc, f"{name}: argument {argument} is not documented"
