"""The end-of-run summary table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = (
    ("round", "round", "{:d}"),
    ("greedy acc", "eval/greedy_accuracy", "{:.3f}"),
    ("+-se", "eval/greedy_accuracy_se", "{:.3f}"),
    ("pass@1", "eval/pass@1", "{:.3f}"),
    ("pass@k", None, "{:.3f}"),
    ("len", "eval/greedy_length", "{:.1f}"),
    ("lists", "mine/lists", "{:d}"),
    ("loss", "train/loss", "{:.4f}"),
    ("pos logratio", "train/logratios/chosen", "{:+.3f}"),
)


def _cell(row: Mapping[str, Any], key: str | None, fmt: str) -> str:
    if key is None:
        passes = sorted((k for k in row if k.startswith("eval/pass@")), key=lambda k: int(k.split("@")[1]))
        key = passes[-1] if passes else None
    value = row.get(key) if key else None
    if value is None:
        return "-"
    try:
        return fmt.format(int(value) if "d}" in fmt else float(value))
    except (TypeError, ValueError):
        return str(value)


def format_summary(history: Sequence[Mapping[str, Any]]) -> str:
    """Format per-round metrics as a fixed-width table."""
    header = [name for name, _, _ in COLUMNS]
    rows = [[_cell(row, key, fmt) for _, key, fmt in COLUMNS] for row in history]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def accuracy_change(history: Sequence[Mapping[str, Any]]) -> str | None:
    """Describe the change in held-out greedy accuracy from round 0 to the last round.

    The standard error of the difference is sqrt(se_0^2 + se_last^2), treating the two
    evaluations as independent samples.
    """
    rows = [row for row in history if "eval/greedy_accuracy" in row]
    if len(rows) < 2:
        return None
    first, last = rows[0], rows[-1]
    change = last["eval/greedy_accuracy"] - first["eval/greedy_accuracy"]
    error = (first["eval/greedy_accuracy_se"] ** 2 + last["eval/greedy_accuracy_se"] ** 2) ** 0.5
    if error > 0:
        ratio = change / error
    else:
        # Both accuracies are 0 or 1, so the standard error is 0 and only the sign is meaningful.
        ratio = math.copysign(math.inf, change) if change else 0.0
    return (
        f"held-out greedy accuracy {first['eval/greedy_accuracy']:.3f} -> {last['eval/greedy_accuracy']:.3f} "
        f"(round {first['round']} -> {last['round']}): change {change:+.3f}, "
        f"{ratio:+.2f} standard errors of the difference"
    )
