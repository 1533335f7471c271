"""SIGKILL inside each phase of a tiny-model run, then resume: the result equals an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kill_resume.py"
PHASES = ["sample", "rerank", "mine", "reference", "optimize", "evaluate"]


def test_kill_resume_every_phase(tmp_path):
    rows_path = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--workdir", str(tmp_path / "runs"), "--json", str(rows_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rows_path.is_file(), result.stderr[-4000:]
    rows = {row["phase"]: row for row in json.loads(rows_path.read_text())}

    assert list(rows) == PHASES
    for phase, row in rows.items():
        assert row["exit_code"] == -signal.SIGKILL, phase
        assert row["problems"] == [], phase
        assert row["resumed_equals_uninterrupted"], phase
        assert row["max_weight_difference"] <= 1e-6, phase
    assert result.returncode == 0, result.stdout
