"""Share of each round's wall time spent outside model compute, from a run's ``manifest.json``.

The engine records every phase's wall seconds in ``manifest.json`` under ``seconds``
(keys ``ROUND/PHASE``). This script splits them into phases whose work is model forward
and backward passes (sample, reference, optimize, evaluate) and the phases around them
that run no model (rerank, pool, mine). It reads an existing run and runs nothing.

NOTE: the split is by phase, so the bookkeeping inside the model phases (tokenising,
writing JSONL, checkpoint saving) counts as model compute here, and the share outside
model compute is a lower bound. A reranker that runs a model (a reward model or an LLM
judge) makes rerank a model phase too; the quickstart's reasoning-gym checker does not.

Run::

    python benchmarks/round.py /tmp/fresh/runs/quickstart-20261204-220652
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

MODEL_PHASES = ("sample", "reference", "optimize", "evaluate")
OTHER_PHASES = ("rerank", "pool", "mine")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="A run directory with a manifest.json.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    manifest = json.loads((Path(args.run_dir) / "manifest.json").read_text(encoding="utf-8"))
    by_round: dict[int, dict[str, float]] = defaultdict(dict)
    for key, seconds in manifest.get("seconds", {}).items():
        round_index, phase = key.split("/", 1)
        by_round[int(round_index)][phase] = float(seconds)

    print(f"{'round':>5} {'total s':>8} {'model s':>8} {'other s':>8} {'other share':>12}   other phases (s)")
    totals = {"model": 0.0, "other": 0.0}
    for round_index in sorted(by_round):
        if round_index == 0:
            continue  # round 0 only evaluates the untrained model
        phases = by_round[round_index]
        model = sum(phases.get(name, 0.0) for name in MODEL_PHASES)
        other = sum(phases.get(name, 0.0) for name in OTHER_PHASES)
        unknown = sorted(set(phases) - set(MODEL_PHASES) - set(OTHER_PHASES))
        if unknown:
            raise SystemExit(f"round {round_index}: unknown phases {unknown}; add them to MODEL_PHASES or OTHER_PHASES")
        totals["model"] += model
        totals["other"] += other
        detail = ", ".join(f"{name} {phases.get(name, 0.0):.3f}" for name in OTHER_PHASES)
        print(
            f"{round_index:>5} {model + other:>8.1f} {model:>8.1f} {other:>8.3f} "
            f"{other / (model + other):>12.6f}   {detail}"
        )
    whole = totals["model"] + totals["other"]
    if whole:
        print(f"training rounds: {totals['other']:.3f} s of {whole:.1f} s outside model phases, "
              f"share {totals['other'] / whole:.6f}")


if __name__ == "__main__":
    main()
