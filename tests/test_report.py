"""larpo report: PNG plots and a self-contained HTML page from a synthetic run directory."""

from __future__ import annotations

import base64
import json
import re

import pytest

from larpo.cli import main
from larpo.report import load_run, pass_at_n, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir, rounds: int = 2) -> None:
    """Write the files of a finished run with ``rounds`` training rounds, as the engine lays them out."""
    run_dir.mkdir(parents=True)
    spec = {"retriever": {"plugin": "hf-causal-lm"}, "rounds": {"count": rounds}, "output_dir": str(run_dir)}
    (run_dir / "manifest.json").write_text(json.dumps({"spec": spec, "status": "finished", "phases": {}}))
    rows = []
    for round_index in range(rounds + 1):
        row = {
            "round": round_index,
            "eval/greedy_accuracy": 0.4 + 0.1 * round_index,
            "eval/greedy_accuracy_se": 0.05,
            "eval/greedy_reward": 0.4 + 0.1 * round_index,
            "eval/greedy_length": 12.0,
            "eval/pass@1": 0.3,
            "eval/pass@2": 0.5,
            "seconds": {"evaluate": 1.0},
        }
        if round_index:
            row.update({"sample/mean_reward": 0.2, "sample/mean_length": 20.0, "mine/hint": "raise <K> & more"})
            folder = run_dir / f"round-{round_index:03d}"
            folder.mkdir()
            steps = [
                {"round": round_index, "step": step, "loss": 1.0 / step, "rewards/margins": 0.1 * step}
                for step in (1, 2, 3)
            ]
            (folder / "train_log.jsonl").write_text("".join(json.dumps(step) + "\n" for step in steps))
            (folder / "mining.json").write_text(json.dumps({"lists": 5, "dropped/no_reward_spread": 3}))
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_report_writes_every_plot(tmp_path):
    write_run(tmp_path / "run")
    written = write_report(tmp_path / "run", tmp_path / "out")
    names = [path.name for path in written]
    assert names == ["metrics.png", "recall.png", "loss.png", "mining.png", "report.html"]
    for path in written[:-1]:
        assert path.read_bytes().startswith(PNG_SIGNATURE), path


def test_report_html_embeds_images(tmp_path):
    write_run(tmp_path / "run")
    write_report(tmp_path / "run", tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4
    for encoded in images:
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)
    assert "<th>round 2</th>" in page
    assert "eval/greedy_accuracy" in page
    assert "&quot;hf-causal-lm&quot;" in page  # the resolved spec, HTML-escaped
    assert "raise &lt;K&gt; &amp; more" in page
    assert "<K>" not in page


def test_report_defaults_to_run_dir_report(tmp_path):
    write_run(tmp_path / "run")
    written = write_report(tmp_path / "run")
    assert all(path.parent == tmp_path / "run" / "report" for path in written)


def test_report_round_zero_only_skips_training_plots(tmp_path):
    write_run(tmp_path / "run", rounds=0)
    names = [path.name for path in write_report(tmp_path / "run")]
    assert names == ["metrics.png", "recall.png", "report.html"]


def test_load_run_reads_rounds(tmp_path):
    write_run(tmp_path / "run")
    data = load_run(tmp_path / "run")
    assert sorted(data.train_logs) == [1, 2]
    assert sorted(data.mining) == [1, 2]
    assert pass_at_n(data.metrics[0]) == {1: 0.3, 2: 0.5}


def test_load_run_missing_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl not found"):
        load_run(tmp_path)


def test_report_cli_lists_files(tmp_path, capsys):
    write_run(tmp_path / "run")
    assert main(["report", str(tmp_path / "run"), "--output", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[-1] == str(tmp_path / "out" / "report.html")
    assert len(printed) == 5


def test_report_cli_missing_run_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert "metrics.jsonl not found" in capsys.readouterr().err
