"""Plots and a self-contained HTML page from a finished (or running) run directory.

``larpo report RUN_DIR`` reads the files the engine writes (``manifest.json``,
``metrics.jsonl``, ``round-NNN/train_log.jsonl`` and ``round-NNN/mining.json``) and
writes PNG plots plus ``report.html``, which embeds the same images as base64 data URIs
and so opens anywhere without the PNG files. A plot whose inputs are absent (a run with
no training round yet, or one without Pass@n) is skipped.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from larpo.atomic import read_json, read_jsonl

PASS_KEY = re.compile(r"^eval/pass@(\d+)$")
ROUND_DIR = re.compile(r"^round-(\d{3,})$")


@dataclass
class RunData:
    """The files of one run directory that the report reads."""

    run_dir: Path
    manifest: dict[str, Any]
    metrics: list[dict[str, Any]]
    # round index -> that round's optimiser-step rows, in step order
    train_logs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # round index -> that round's mining.json
    mining: dict[int, dict[str, Any]] = field(default_factory=dict)


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory; raise FileNotFoundError when it has no ``metrics.jsonl``."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.is_file():
        raise FileNotFoundError(
            f"{metrics_path} not found: {run_dir} is not a larpo run directory, or its round 0 "
            "evaluation has not finished yet"
        )
    manifest_path = run_dir / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    data = RunData(run_dir=run_dir, manifest=manifest, metrics=list(read_jsonl(metrics_path)))
    for folder in sorted(run_dir.iterdir()):
        match = ROUND_DIR.match(folder.name)
        if match is None or not folder.is_dir():
            continue
        round_index = int(match.group(1))
        if (folder / "train_log.jsonl").is_file():
            data.train_logs[round_index] = list(read_jsonl(folder / "train_log.jsonl"))
        if (folder / "mining.json").is_file():
            data.mining[round_index] = read_json(folder / "mining.json")
    return data


def _values(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Return the rounds and values of ``key`` in the rows that have a number there."""
    rounds, values = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            rounds.append(int(row["round"]))
            values.append(float(value))
    return rounds, values


def pass_at_n(row: dict[str, Any]) -> dict[int, float]:
    """Return a metrics row's Pass@n values keyed by n, in increasing n."""
    found = {int(match.group(1)): float(value) for key, value in row.items() if (match := PASS_KEY.match(key))}
    return dict(sorted(found.items()))


def _new_figure(columns: int, rows: int = 1) -> tuple[Figure, Any]:
    figure = Figure(figsize=(5.0 * columns, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def plot_metrics(data: RunData) -> Figure | None:
    """Greedy accuracy with standard-error bars, Pass@N, mean reward and response length by round."""
    rows = data.metrics
    if not rows:
        return None
    figure, axes = _new_figure(2, 2)
    accuracy_axes, pass_axes, reward_axes, length_axes = axes.flat

    rounds, accuracy = _values(rows, "eval/greedy_accuracy")
    errors = [float(row.get("eval/greedy_accuracy_se") or 0.0) for row in rows if row["round"] in rounds]
    accuracy_axes.errorbar(rounds, accuracy, yerr=errors, marker="o", capsize=4)
    accuracy_axes.set_title("held-out greedy accuracy (± 1 s.e.)")

    largest = [(int(row["round"]), max(pass_at_n(row).items())) for row in rows if pass_at_n(row)]
    if largest:
        pass_axes.plot([r for r, _ in largest], [value for _, (_, value) in largest], marker="o")
        pass_axes.set_title(f"held-out Pass@{largest[-1][1][0]}")
    else:
        pass_axes.set_title("held-out Pass@N (not measured)")

    for key, label in (
        ("eval/greedy_reward", "greedy (held-out)"),
        ("eval/sample_reward", "sampled (held-out)"),
        ("sample/mean_reward", "sampled (train)"),
    ):
        reward_rounds, rewards = _values(rows, key)
        if rewards:
            reward_axes.plot(reward_rounds, rewards, marker="o", label=label)
    reward_axes.set_title("mean reward")
    reward_axes.legend(fontsize="small")

    for key, label in (("eval/greedy_length", "greedy (held-out)"), ("sample/mean_length", "sampled (train)")):
        length_rounds, lengths = _values(rows, key)
        if lengths:
            length_axes.plot(length_rounds, lengths, marker="o", label=label)
    length_axes.set_title("mean response length (tokens)")
    length_axes.legend(fontsize="small")

    for axis in axes.flat:
        axis.set_xlabel("round")
        axis.grid(alpha=0.3)
    return figure


def plot_recall(data: RunData) -> Figure | None:
    """Recall@n curves: Pass@n against n = 1..K, one line per round that measured it."""
    curves = [(int(row["round"]), pass_at_n(row)) for row in data.metrics if pass_at_n(row)]
    if not curves:
        return None
    figure, axes = _new_figure(1)
    axis = axes[0, 0]
    for round_index, values in curves:
        axis.plot(list(values), list(values.values()), marker="o", label=f"round {round_index}")
    axis.set_xlabel("n (samples per prompt)")
    axis.set_ylabel("Pass@n")
    axis.set_title("held-out Recall@n (Pass@n)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return figure


def plot_loss(data: RunData) -> Figure | None:
    """Loss and ``rewards/margins`` per optimiser step, steps of later rounds after earlier ones."""
    if not any(data.train_logs.values()):
        return None
    figure, axes = _new_figure(2)
    offset = 0
    for round_index, steps in sorted(data.train_logs.items()):
        positions = [offset + int(step.get("step", number)) for number, step in enumerate(steps, start=1)]
        for axis, key in zip(axes[0], ("loss", "rewards/margins"), strict=True):
            points = [(x, float(step[key])) for x, step in zip(positions, steps, strict=True) if key in step]
            if points:
                axis.plot([x for x, _ in points], [y for _, y in points], marker=".", label=f"round {round_index}")
        offset = max(positions, default=offset)
    for axis, title in zip(axes[0], ("loss", "rewards/margins (chosen - rejected)"), strict=True):
        axis.set_title(title)
        axis.set_xlabel("optimiser step (all rounds)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    return figure


def plot_mining(data: RunData) -> Figure | None:
    """Lists built and prompts dropped (by reason) per round, as stacked bars."""
    if not data.mining:
        return None
    rounds = sorted(data.mining)
    reasons = sorted({key for report in data.mining.values() for key in report if key.startswith("dropped/")})
    figure, axes = _new_figure(1)
    axis = axes[0, 0]
    built = [float(data.mining[r].get("lists", 0)) for r in rounds]
    axis.bar(rounds, built, label="lists built")
    bottom = list(built)
    for reason in reasons:
        counts = [float(data.mining[r].get(reason, 0)) for r in rounds]
        axis.bar(rounds, counts, bottom=bottom, label=reason)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    axis.set_xlabel("round")
    axis.set_ylabel("prompts")
    axis.set_xticks(rounds)
    axis.set_title("mining: lists built and prompts dropped")
    axis.legend(fontsize="small")
    return figure


# File name (without .png) -> plot function, in the order of the HTML page.
PLOTS: dict[str, Callable[[RunData], Figure | None]] = {
    "metrics": plot_metrics,
    "recall": plot_recall,
    "loss": plot_loss,
    "mining": plot_mining,
}


def _format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def metrics_table(rows: Sequence[dict[str, Any]]) -> str:
    """Build an HTML table with one column per round and one row per metric key."""
    keys = sorted({key for row in rows for key in row if key not in {"round", "seconds"}})
    header = "".join(f"<th>round {html.escape(str(row['round']))}</th>" for row in rows)
    lines = [f"<table><thead><tr><th>metric</th>{header}</tr></thead><tbody>"]
    for key in keys:
        cells = "".join(f"<td>{html.escape(_format_cell(row[key])) if key in row else ''}</td>" for row in rows)
        lines.append(f"<tr><th>{html.escape(key)}</th>{cells}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
tbody th { text-align: left; font-weight: normal; }
img { max-width: 100%; display: block; margin: 1em 0; }
pre { background: #f5f5f5; padding: 1em; overflow-x: auto; }
"""


def render_html(data: RunData, images: dict[str, bytes]) -> str:
    """Build the report page: embedded plots, the metrics table and the resolved spec."""
    title = f"larpo report: {data.run_dir.name}"
    status = data.manifest.get("status", "unknown")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Run directory: <code>{html.escape(str(data.run_dir))}</code>. Status: {html.escape(str(status))}. "
        f"Rounds with metrics: {len(data.metrics)}.</p>",
        "<h2>Plots</h2>",
    ]
    for name, png in images.items():
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">')
    parts += ["<h2>Metrics by round</h2>", metrics_table(data.metrics)]
    spec = data.manifest.get("spec")
    parts.append("<h2>Resolved spec</h2>")
    if spec is None:
        parts.append("<p>manifest.json has no spec.</p>")
    else:
        parts.append(f"<pre>{html.escape(json.dumps(spec, indent=2, sort_keys=True))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, output_dir: str | Path | None = None) -> list[Path]:
    """Write the PNG plots and ``report.html``; return their paths, HTML last.

    ``output_dir`` defaults to ``RUN_DIR/report``.
    """
    data = load_run(run_dir)
    out = Path(output_dir) if output_dir is not None else data.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images: dict[str, bytes] = {}
    for name, plot in PLOTS.items():
        figure = plot(data)
        if figure is None:
            continue
        path = out / f"{name}.png"
        figure.savefig(path, dpi=100)
        images[name] = path.read_bytes()
        written.append(path)
    page = out / "report.html"
    page.write_text(render_html(data, images), encoding="utf-8")
    written.append(page)
    return written
