"""Kill a tiny-model run with SIGKILL inside each phase, resume it, and compare with an uninterrupted run.

For every phase the script starts a child process that runs the engine and kills
itself with ``os.kill(os.getpid(), signal.SIGKILL)`` at that phase's kill point (the
environment variable ``LARPO_KILL_AT`` names the phase). A second child resumes the
run with ``Engine.run(resume=True)``. The resumed run must match an uninterrupted run
with the same seed: the final weights within ``--atol``, every round's metrics, the
candidates of every round (none lost or duplicated) and the mined lists.

The model is a random 2-layer Llama on SmolLM2's tokenizer: 4 training prompts,
2 held-out prompts, 2 rounds, 4-token responses, pools of round 1 and 2 in round 2.

Run::

    python scripts/kill_resume.py
    python scripts/kill_resume.py --phases optimize,evaluate --start-method spawn

It prints one table row per phase and exits with status 1 if any resumed run differs.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PHASES = ("sample", "rerank", "mine", "reference", "optimize", "evaluate")
ROUNDS = 2

# Phase -> (round, where the child kills itself). Each point lies after the phase has
# written some or all of its files and before the manifest marks the phase done.
KILL_POINTS: dict[str, tuple[int, str]] = {
    "sample": (2, "candidates.jsonl written, phase not marked"),
    "rerank": (2, "rewards written, phase not marked"),
    "mine": (2, "lists.jsonl written, phase not marked"),
    "reference": (2, "reference.safetensors written, phase not marked"),
    "optimize": (2, "after step 1 of 2, no checkpoint yet"),
    "evaluate": (1, "metrics.json and metrics.jsonl written, phase not marked"),
}

_tokenizer: Any = None


def load_tokenizer() -> Any:
    global _tokenizer
    if _tokenizer is None:
        from transformers import AutoTokenizer

        from larpo.model_source import resolve_model

        _tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    return _tokenizer


class ChecksumReranker:
    """Rewards a response by the sum of its token ids modulo 3: arbitrary, spread and deterministic."""

    def score(self, prompts: Any, responses: Any) -> list[Any]:
        from larpo.types import Score

        return [Score(float(sum(r.token_ids) % 3)) for r in responses]


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillSwitch:
    """A lifecycle plugin that kills the process at one hook call."""

    def __init__(self, hook_name: str, round_index: int, step: int | None = None) -> None:
        self.hook_name = hook_name
        self.round_index = round_index
        self.step = step

    def __getattr__(self, name: str) -> Callable[..., list[Any]]:
        def hook(**kwargs: Any) -> list[Any]:
            matches = name == self.hook_name and kwargs.get("round_index") == self.round_index
            if matches and (self.step is None or kwargs.get("step") == self.step):
                kill_self()
            return []

        return hook


def arm_kill(phase: str) -> Any:
    """Install the kill point of ``phase`` in this process; return the hook object for the engine."""
    from larpo.engine import loop

    round_index, _ = KILL_POINTS[phase]
    hooks = {"sample": "larpo_after_sample", "rerank": "larpo_after_rerank", "mine": "larpo_after_mine"}
    if phase in hooks:
        return KillSwitch(hooks[phase], round_index)
    if phase == "optimize":
        return KillSwitch("larpo_optimizer_step", round_index, step=1)
    if phase == "reference":
        original_reference = loop.run_reference

        def run_reference(ctx: Any, index: int, *args: Any) -> Any:
            result = original_reference(ctx, index, *args)
            if index == round_index:
                kill_self()
            return result

        setattr(loop, "run_reference", run_reference)  # noqa: B010
        return None
    if phase == "evaluate":
        original_write = loop.Engine._write_round_metrics

        def write_round_metrics(self: Any, index: int, *args: Any) -> None:
            original_write(self, index, *args)
            if index == round_index:
                kill_self()

        setattr(loop.Engine, "_write_round_metrics", write_round_metrics)  # noqa: B010
        return None
    raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")


def child_main(run_dir: str, resume: bool, kill_at: str | None) -> None:
    """Run (or resume) the tiny-model engine in this process, armed to kill itself at ``kill_at``."""
    import torch

    import larpo
    from larpo.engine import Engine
    from larpo.plugins import registry
    from larpo.spec import EvaluationSpec, LoraSpec, OptimizationSpec, RoundsSpec
    from larpo.testing import make_tiny_model
    from larpo.types import Prompt, PromptSplits

    torch.set_num_threads(1)
    if kill_at:
        os.environ["LARPO_KILL_AT"] = kill_at
    hook = arm_kill(kill_at) if kill_at else None
    tokenizer = load_tokenizer()
    factory: Any = registry("retriever").get("hf-causal-lm").factory
    retriever = factory.from_objects(make_tiny_model(tokenizer), tokenizer)
    prompts = [Prompt(id=f"p{i}", text=f"Count to {i + 2}.") for i in range(6)]
    engine = Engine(
        retriever=retriever,
        reranker=ChecksumReranker(),
        miner=registry("miner").build("rank", {"num_negatives": 2}),
        loss=larpo.losses.get("contrastive", beta=0.5),
        prompts=PromptSplits(train=prompts[:4], heldout=prompts[4:]),
        run_dir=run_dir,
        rounds=RoundsSpec(
            count=ROUNDS, samples_per_prompt=3, max_new_tokens=4, temperature=1.5, memorization="previous"
        ),
        optimization=OptimizationSpec(lr=1e-2, epochs=1, batch_size=6, micro_batch_size=3, lora=LoraSpec(r=4, alpha=8)),
        evaluation=EvaluationSpec(pass_k=0, success_threshold=2.0),
        seed=7,
        hook=hook,
    )
    engine.run(resume=resume)


def start_child(context: Any, run_dir: Path, resume: bool, kill_at: str | None) -> Any:
    """Start ``child_main`` in a new process; its exit code is ``-9`` after SIGKILL."""
    process = context.Process(target=child_main, args=(str(run_dir), resume, kill_at))
    process.start()
    return process


# -- comparison (numpy only, so a forking parent never starts torch's thread pools) ------


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def without_seconds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the wall-clock ``seconds`` entry, the one metric that differs between equal runs."""
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def values_match(a: Any, b: Any, atol: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=atol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_match(a[k], b[k], atol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_match(x, y, atol) for x, y in zip(a, b))
    return bool(a == b)


def max_weight_difference(full: Path, resumed: Path) -> float:
    from safetensors.numpy import load_file

    name = f"round-{ROUNDS:03d}/checkpoint/adapter_model.safetensors"
    expected, actual = load_file(str(full / name)), load_file(str(resumed / name))
    if expected.keys() != actual.keys():
        return math.inf
    return max(float(abs(expected[k].astype("float64") - actual[k].astype("float64")).max()) for k in expected)


def compare_runs(full: Path, resumed: Path, atol: float) -> tuple[float, list[str]]:
    """Return the max weight difference and the list of mismatches between two finished runs."""
    problems: list[str] = []
    manifest = json.loads((resumed / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("status") != "finished":
        problems.append(f"manifest status {manifest.get('status')!r}, expected 'finished'")

    difference = max_weight_difference(full, resumed)
    if not difference <= atol:
        problems.append(f"final weights differ by {difference:.3g}")

    full_metrics = without_seconds(read_rows(full / "metrics.jsonl"))
    resumed_metrics = without_seconds(read_rows(resumed / "metrics.jsonl"))
    if [r["round"] for r in resumed_metrics] != list(range(ROUNDS + 1)):
        problems.append(f"metrics.jsonl rounds {[r['round'] for r in resumed_metrics]}")
    elif not values_match(full_metrics, resumed_metrics, atol):
        problems.append("metrics.jsonl differs")

    for round_index in range(1, ROUNDS + 1):
        folder = f"round-{round_index:03d}"
        expected = read_rows(full / folder / "candidates.jsonl")
        actual = read_rows(resumed / folder / "candidates.jsonl")
        ids = [row["id"] for row in actual]
        if len(ids) != len(set(ids)):
            problems.append(f"{folder}: duplicated candidates")
        if [row["id"] for row in expected] != ids:
            problems.append(f"{folder}: candidate ids differ (lost or extra candidates)")
        elif not values_match(expected, actual, atol):
            problems.append(f"{folder}: candidate texts or rewards differ")
        if read_rows(full / folder / "lists.jsonl") != read_rows(resumed / folder / "lists.jsonl"):
            problems.append(f"{folder}: mined lists differ")
    return difference, problems


def check_killed(phase: str, run_dir: Path, code: int) -> list[str]:
    """Return what is wrong with a run that should have been killed inside ``phase``."""
    round_index, _ = KILL_POINTS[phase]
    problems = []
    if code != -signal.SIGKILL:
        problems.append(f"child exited with {code}, expected SIGKILL")
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    if manifest["phases"].get(f"{round_index}/{phase}") == "done":
        problems.append("the killed phase is marked done")
    return problems


def run_all(context: Any, phases: list[str], workdir: Path, atol: float, jobs: int) -> list[dict[str, Any]]:
    """Run the uninterrupted run and, per phase, a killed run and its resume, ``jobs`` processes at a time.

    The parent waits on process sentinels rather than threads, so it forks from a
    single-threaded process.
    """
    full = workdir / "uninterrupted"
    # Work items: (phase or None for the uninterrupted run, resume?).
    pending: list[tuple[str | None, bool]] = [(None, False)] + [(phase, False) for phase in phases]
    running: dict[int, tuple[Any, str | None, bool]] = {}  # sentinel -> (process, phase, resume)
    exit_codes: dict[tuple[str | None, bool], int] = {}
    problems: dict[str, list[str]] = {phase: [] for phase in phases}
    while pending or running:
        while pending and len(running) < max(jobs, 1):
            phase, resume = pending.pop(0)
            run_dir = full if phase is None else workdir / f"killed-{phase}"
            process = start_child(context, run_dir, resume, None if resume else phase)
            running[process.sentinel] = (process, phase, resume)
        for sentinel in multiprocessing.connection.wait(list(running)):
            process, phase, resume = running.pop(int(sentinel))  # type: ignore[arg-type]
            process.join()
            code = int(process.exitcode)
            exit_codes[(phase, resume)] = code
            if phase is None and code != 0:
                raise SystemExit(f"the uninterrupted run failed with exit code {code}")
            if phase is not None and not resume:
                problems[phase] += check_killed(phase, workdir / f"killed-{phase}", code)
                pending.append((phase, True))

    rows = []
    for phase in phases:
        round_index, point = KILL_POINTS[phase]
        row: dict[str, Any] = {
            "phase": phase,
            "round": round_index,
            "kill_point": point,
            "exit_code": exit_codes[(phase, False)],
        }
        found = problems[phase]
        difference = math.inf
        if exit_codes[(phase, True)] != 0:
            found.append(f"resumed child exited with {exit_codes[(phase, True)]}")
        else:
            difference, mismatches = compare_runs(full, workdir / f"killed-{phase}", atol)
            found += mismatches
        row.update(max_weight_difference=difference, resumed_equals_uninterrupted=not found, problems=found)
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| phase | round | kill point | exit code | resumed == uninterrupted | max weight difference |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['phase']} | {row['round']} | {row['kill_point']} | {row['exit_code']} "
            f"| {'yes' if row['resumed_equals_uninterrupted'] else 'NO'} | {row['max_weight_difference']:.3g} |"
        )
    for row in rows:
        for problem in row["problems"]:
            lines.append(f"{row['phase']}: {problem}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"Comma-separated phases (default {','.join(PHASES)})."
    )
    parser.add_argument("--workdir", type=Path, help="Folder for the run directories (default: a new temporary one).")
    parser.add_argument("--atol", type=float, default=1e-6, help="Largest allowed weight and metric difference.")
    parser.add_argument("--jobs", type=int, default=2, help="Phases killed and resumed at the same time.")
    parser.add_argument(
        "--start-method",
        choices=["fork", "spawn"],
        default="fork" if sys.platform.startswith("linux") else "spawn",
        help="fork (fast: the parent has already imported torch and the tokenizer) or spawn (a fresh interpreter).",
    )
    parser.add_argument("--json", type=Path, help="Also write the rows to this JSON file.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise SystemExit(f"unknown phases {unknown}; expected some of {', '.join(PHASES)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="larpo-kill-resume-"))
    workdir.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context(args.start_method)
    if args.start_method == "fork":
        # Import the libraries and load the tokenizer once; children inherit them.
        import peft  # noqa: F401
        import transformers  # noqa: F401

        from larpo.plugins import registry

        registry("retriever")
        load_tokenizer()

    rows = run_all(context, phases, workdir, args.atol, args.jobs)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0 if all(row["resumed_equals_uninterrupted"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
