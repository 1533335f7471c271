"""The ``larpo`` command line: run, validate, plugins, schema and eval-reranker."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from larpo import __version__

logger = logging.getLogger("larpo")

EXIT_INVALID = 2


def _add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="Path to the YAML spec.")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a spec value by dotted path, e.g. --set rounds.count=2 (repeatable).",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="larpo", description="LLM alignment as retriever optimisation.")
    parser.add_argument("--version", action="version", version=f"larpo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="Run iterative LarPO training from a spec.")
    _add_spec_arguments(run)
    run.add_argument(
        "--resume", action="store_true", help="Continue the run in output_dir at its first unfinished phase."
    )

    validate = commands.add_parser("validate", help="Check a spec (every error at once) without loading weights.")
    _add_spec_arguments(validate)

    plugins = commands.add_parser("plugins", help="List installed plugins, their components and failures.")
    plugins.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    plugins.add_argument(
        "--available",
        action="store_true",
        help="List the components in the plugin catalogue (registry/plugins.json) that are not installed.",
    )

    schema = commands.add_parser(
        "schema", help="Print the JSON schema of the spec, including every installed plugin's params."
    )
    schema.add_argument(
        "--plugin", metavar="NAME", help="Print only the schema of the components registered under NAME."
    )

    eval_reranker = commands.add_parser(
        "eval-reranker", help="Report the pairwise accuracy of a spec's reranker on labelled preference pairs."
    )
    eval_reranker.add_argument("pairs", help="JSONL file with prompt, better and worse keys per row.")
    eval_reranker.add_argument("--spec", required=True, help="Spec whose reranker is evaluated.")
    eval_reranker.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="Override a spec value."
    )
    eval_reranker.add_argument("--json", action="store_true", help="Print JSON instead of a summary line.")
    _add_checkpoint_parsers(commands)
    _add_report_parser(commands)
    return parser


def _resolve(args: argparse.Namespace) -> Any:
    from larpo.plugins import get_host
    from larpo.spec import resolve_spec

    host = get_host()
    return host, resolve_spec(args.spec, args.overrides, host.registries)


def _print_failure_notes(host: Any) -> None:
    for record in host.failed_plugins():
        print(f"note: {record.failure_summary()}", file=sys.stderr)


def _report_spec_error(error: Exception, host: Any | None = None) -> int:
    print(str(error), file=sys.stderr)
    if host is not None:
        _print_failure_notes(host)
    return EXIT_INVALID


def command_validate(args: argparse.Namespace) -> int:
    from larpo.plugins import get_host
    from larpo.spec import SpecError, resolve_spec

    host = get_host()
    try:
        spec = resolve_spec(args.spec, args.overrides, host.registries)
    except SpecError as error:
        return _report_spec_error(error, host)
    print(f"{args.spec}: valid ({spec.rounds.count} rounds, output_dir {spec.output_dir})")
    return 0


def command_run(args: argparse.Namespace) -> int:
    from larpo.build import build_engine
    from larpo.engine.loop import RunDirError
    from larpo.log import setup_logging
    from larpo.plugins import get_host
    from larpo.spec import SpecError, resolve_spec

    setup_logging()
    host = get_host()
    try:
        spec = resolve_spec(args.spec, args.overrides, host.registries)
    except SpecError as error:
        return _report_spec_error(error, host)
    logger.info("larpo %s: resolved spec\n%s", __version__, json.dumps(spec.model_dump(mode="json"), indent=2))
    engine = build_engine(spec, host)
    try:
        engine.run(resume=args.resume)
    except RunDirError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    return 0


def _plugin_rows(host: Any) -> list[dict[str, Any]]:
    rows = []
    for record in host.records.values():
        components = []
        for component in record.components:
            kind, name = component.split(":", 1)
            components.append({"kind": kind, "name": name, "summary": host.registries[kind].get(name).summary})
        rows.append(
            {
                "name": record.name,
                "kinds": record.kinds,
                "distribution": record.distribution,
                "version": record.version,
                "entry_point": record.entry_point,
                "status": record.status,
                "error": record.error,
                "hooks": record.hooks,
                "components": components,
            }
        )
    return rows


def _print_installed(host: Any, rows: list[dict[str, Any]]) -> None:
    print("Components:")
    print(f"  {'KIND':<10} {'NAME':<16} {'PLUGIN':<16} {'DISTRIBUTION':<24} SUMMARY")
    for kind, registry in host.registries.items():
        for entry in registry:
            source = f"{entry.distribution} {entry.version}".strip()
            print(f"  {kind:<10} {entry.name:<16} {entry.plugin:<16} {source:<24} {entry.summary}")
    print("Plugins:")
    print(f"  {'NAME':<16} {'DISTRIBUTION':<24} {'STATUS':<18} HOOKS")
    for row in rows:
        source = f"{row['distribution']} {row['version']}".strip()
        print(f"  {row['name']:<16} {source:<24} {row['status']:<18} {', '.join(row['hooks']) or '-'}")
        if row["error"]:
            print(f"  {'':<16} error: {row['error']}")


def _available_rows(host: Any) -> list[dict[str, Any]]:
    from larpo.plugins import load_catalogue

    return [
        item
        for item in load_catalogue()
        if item["kind"] in host.registries and item["name"] not in host.registries[item["kind"]]
    ]


def command_plugins(args: argparse.Namespace) -> int:
    from larpo.plugins import get_host

    host = get_host()
    if args.available:
        available = _available_rows(host)
        if args.json:
            print(json.dumps(available, indent=2))
            return 0
        if not available:
            print("Every component in the plugin catalogue is installed.")
        for item in available:
            print(f"{item['kind']:<10} {item['name']:<16} pip install {item['distribution']:<24} {item['summary']}")
        return 0
    rows = _plugin_rows(host)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _print_installed(host, rows)
    return 0


def command_schema(args: argparse.Namespace) -> int:
    from larpo.plugins import get_host
    from larpo.spec import plugin_json_schema, spec_json_schema

    host = get_host()
    if args.plugin is None:
        print(json.dumps(spec_json_schema(host.registries), indent=2))
        return 0
    try:
        schema = plugin_json_schema(host.registries, args.plugin)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        _print_failure_notes(host)
        return EXIT_INVALID
    print(json.dumps(schema, indent=2))
    return 0


PAIR_KEYS = ("prompt", "better", "worse")
EVAL_CHUNK_PAIRS = 32


def _load_pairs(path: str) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [key for key in PAIR_KEYS if not isinstance(row.get(key), str)]
            if missing:
                raise ValueError(f"{path}:{number}: missing or non-string keys {', '.join(missing)}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} contains no pairs")
    return rows


def pairwise_accuracy(reranker: Any, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Score each row's better and worse response; a pair is correct when better scores strictly higher.

    A row's optional ``metadata`` object becomes the prompt's metadata (for example a reference answer).
    """
    from collections import Counter

    from larpo.types import Candidate, Prompt

    correct = ties = 0
    statuses: Counter[str] = Counter()
    for start in range(0, len(rows), EVAL_CHUNK_PAIRS):
        chunk = rows[start : start + EVAL_CHUNK_PAIRS]
        prompts, responses = [], []
        for index, row in enumerate(chunk, start=start):
            prompt = Prompt(id=f"pair-{index}", text=row["prompt"], metadata=dict(row.get("metadata", {})))
            for label in ("better", "worse"):
                prompts.append(prompt)
                responses.append(Candidate(f"pair-{index}-{label}", prompt.id, row[label], [], True, 0.0, 0, 0.0))
        scores = reranker.score(prompts, responses)
        for better, worse in zip(scores[0::2], scores[1::2]):
            correct += better.reward > worse.reward
            ties += better.reward == worse.reward
            statuses.update([better.status, worse.status])
    return {"pairs": len(rows), "correct": correct, "ties": ties, "accuracy": correct / len(rows), "statuses": statuses}


def command_eval_reranker(args: argparse.Namespace) -> int:
    from larpo.plugins import get_host
    from larpo.spec import SpecError, resolve_spec

    host = get_host()
    try:
        spec = resolve_spec(args.spec, args.overrides, host.registries)
        rows = _load_pairs(args.pairs)
    except (SpecError, ValueError, OSError) as error:
        return _report_spec_error(error, host)
    reranker = host.registries["reranker"].build(spec.reranker.plugin, spec.reranker.params())
    result = pairwise_accuracy(reranker, rows)
    result.update(reranker=spec.reranker.plugin, statuses=dict(result["statuses"]))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{spec.reranker.plugin}: pairwise accuracy {result['accuracy']:.3f} "
            f"({result['correct']}/{result['pairs']} correct, {result['ties']} ties) on {args.pairs}"
        )
    return 0


def _add_checkpoint_parsers(commands: Any) -> None:
    """Add the ``eval`` and ``generate`` subcommands, which use a trained policy."""
    evaluate = commands.add_parser(
        "eval", help="Evaluate a round's checkpoint on the spec's held-out prompts and print the metrics as JSON."
    )
    evaluate.add_argument("checkpoint", help="A round's checkpoint/ folder (LoRA adapter or full weights).")
    evaluate.add_argument("--spec", required=True, help="Spec whose retriever, data, reranker and evaluation are used.")
    evaluate.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="Override a spec value."
    )
    evaluate.add_argument("--output", metavar="FILE", help="Also write the metrics as JSON to FILE.")
    evaluate.add_argument(
        "--responses-dir",
        metavar="DIR",
        help="Keep eval_greedy.jsonl and eval_samples.jsonl in DIR (by default they are discarded).",
    )

    generate = commands.add_parser(
        "generate", help="Sample N responses per prompt, rerank them and print the best one (best-of-N)."
    )
    generate.add_argument("--spec", required=True, help="Spec whose retriever and reranker are used.")
    generate.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="Override a spec value."
    )
    generate.add_argument(
        "--checkpoint", metavar="DIR", help="A round's checkpoint/ folder to load into the retriever."
    )
    generate.add_argument("--best-of", type=int, required=True, metavar="N", help="Responses sampled per prompt.")
    prompt_source = generate.add_mutually_exclusive_group()
    prompt_source.add_argument(
        "--prompt", action="append", default=[], metavar="TEXT", help="A prompt text (repeatable)."
    )
    prompt_source.add_argument(
        "--prompts",
        metavar="FILE",
        help="JSONL file with a text key and optional id and metadata keys per row. "
        "Without --prompt or --prompts, the spec's held-out prompts are used.",
    )
    generate.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature (default 1.0).")
    generate.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="M",
        help="Maximum response length in tokens (default: evaluation.max_new_tokens, else rounds.max_new_tokens).",
    )
    generate.add_argument("--seed", type=int, help="Sampling seed (default: the spec's seed).")


def _checkpoint_context(spec: Any, host: Any, run_dir: Path, prompts: Any = None) -> Any:
    """Build a run context from the spec's components for work outside a run (no accelerator)."""
    from larpo.build import build_component
    from larpo.engine.context import RunContext

    if prompts is None:
        prompts = build_component(host, "data", spec).load()
    return RunContext(
        retriever=build_component(host, "retriever", spec),
        reranker=build_component(host, "reranker", spec),
        miner=build_component(host, "miner", spec),
        loss=build_component(host, "loss", spec),
        prompts=prompts,
        rounds=spec.rounds,
        optimization=spec.optimization,
        reference=spec.reference,
        evaluation=spec.evaluation,
        run_dir=run_dir,
        seed=spec.seed,
        hook=host.hook,
    )


def _checkpoint_round(folder: Path) -> int | None:
    """Return NNN for a folder RUN_DIR/round-NNN/checkpoint, else None."""
    match = re.fullmatch(r"round-(\d+)", folder.parent.name)
    return int(match.group(1)) if match and folder.name == "checkpoint" else None


def command_eval(args: argparse.Namespace) -> int:
    import tempfile

    from larpo.engine.evaluate import load_policy, run_evaluate
    from larpo.plugins import get_host
    from larpo.spec import SpecError, resolve_spec

    host = get_host()
    try:
        spec = resolve_spec(args.spec, args.overrides, host.registries)
    except SpecError as error:
        return _report_spec_error(error, host)
    folder = Path(args.checkpoint)
    if not folder.is_dir():
        print(f"error: checkpoint folder {folder} not found; pass a round's checkpoint/ folder", file=sys.stderr)
        return EXIT_INVALID

    # Inside a run folder, the round's seeds, round 0's greedy responses (win rate) and the
    # saved initial weights (KL of full fine-tuning) are those of the run. Nothing is written there.
    round_index = _checkpoint_round(folder)
    run_dir = folder.parent.parent if round_index is not None else None
    with tempfile.TemporaryDirectory(prefix="larpo-eval-") as scratch:
        ctx = _checkpoint_context(spec, host, run_dir or Path(scratch))
        load_policy(ctx.retriever, folder)
        # A checkpoint evaluation always measures Pass@K, whatever the value of pass_k_rounds.
        ctx.evaluation = ctx.evaluation.model_copy(update={"pass_k_rounds": "all"})
        out_dir = Path(args.responses_dir) if args.responses_dir else Path(scratch)
        out_dir.mkdir(parents=True, exist_ok=True)
        baseline = run_dir / "round-000" / "eval_greedy.jsonl" if run_dir is not None else None
        metrics = run_evaluate(ctx, round_index or 0, out_dir=out_dir, baseline_greedy=baseline)
    metrics["checkpoint"] = str(folder)
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.output:
        from larpo.atomic import write_json

        write_json(Path(args.output), metrics)
    return 0


def _read_generate_prompts(args: argparse.Namespace) -> list[Any] | None:
    """Return the prompts given on the command line or in --prompts, or None when neither is given."""
    from larpo.types import Prompt

    if args.prompt:
        return [Prompt(id=f"prompt-{index}", text=text) for index, text in enumerate(args.prompt)]
    if not args.prompts:
        return None
    prompts = []
    with open(args.prompts, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("text"), str):
                raise ValueError(f"{args.prompts}:{number}: missing or non-string key text")
            prompt_id = str(row.get("id", f"prompt-{number}"))
            prompts.append(Prompt(id=prompt_id, text=row["text"], metadata=dict(row.get("metadata", {}))))
    if not prompts:
        raise ValueError(f"{args.prompts} contains no prompts")
    return prompts


def best_of_n(
    ctx: Any, prompts: Sequence[Any], n: int, temperature: float, max_new_tokens: int, seed: int
) -> list[dict[str, Any]]:
    """Sample ``n`` responses per prompt, score them with the reranker and return the best per prompt.

    Ties keep the earliest sample. Each row lists every sample's reward, in sampling order.
    """
    from larpo.engine.rerank import run_rerank
    from larpo.engine.sample import draw
    from larpo.types import Candidate

    samples = draw(
        ctx, prompts, num_samples=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, desc="generate"
    )
    groups = []
    for prompt, prompt_samples in zip(prompts, samples):
        group = [
            Candidate(
                id=f"{prompt.id}/generate/{k}",
                prompt_id=prompt.id,
                text=sample.text,
                token_ids=list(sample.token_ids),
                finished=sample.finished,
                behaviour_logps=sample.behaviour_logps,
                round_index=0,
                temperature=temperature,
            )
            for k, sample in enumerate(prompt_samples)
        ]
        groups.append(group)
    run_rerank(ctx, [c for group in groups for c in group], desc="generate rerank")

    rows = []
    for prompt, group in zip(prompts, groups):
        rewards = [float(c.reward or 0.0) for c in group]
        best = group[rewards.index(max(rewards))]
        rows.append(
            {
                "prompt_id": prompt.id,
                "prompt": prompt.text,
                "response": best.text,
                "reward": best.reward,
                "status": best.status,
                "rewards": rewards,
            }
        )
    return rows


def command_generate(args: argparse.Namespace) -> int:
    import tempfile

    from larpo.build import build_component
    from larpo.engine.evaluate import load_policy
    from larpo.plugins import get_host
    from larpo.spec import SpecError, resolve_spec
    from larpo.types import PromptSplits

    host = get_host()
    try:
        spec = resolve_spec(args.spec, args.overrides, host.registries)
        prompts = _read_generate_prompts(args)
    except (SpecError, ValueError, OSError) as error:
        return _report_spec_error(error, host)
    if args.best_of < 1:
        print(f"error: --best-of must be at least 1, got {args.best_of}", file=sys.stderr)
        return EXIT_INVALID
    if args.temperature < 0 or (args.temperature == 0 and args.best_of > 1):
        print(
            f"error: --temperature {args.temperature} is invalid with --best-of {args.best_of}; greedy decoding "
            "(temperature 0) draws one response, so use a positive temperature or --best-of 1",
            file=sys.stderr,
        )
        return EXIT_INVALID
    if prompts is None:
        # Rerankers such as reasoning-gym need the prompt metadata that the spec's data source provides.
        prompts = build_component(host, "data", spec).load().heldout
    max_new_tokens = args.max_new_tokens or spec.evaluation.max_new_tokens or spec.rounds.max_new_tokens
    seed = spec.seed if args.seed is None else args.seed

    with tempfile.TemporaryDirectory(prefix="larpo-generate-") as scratch:
        ctx = _checkpoint_context(spec, host, Path(scratch), PromptSplits(train=[], heldout=list(prompts)))
        if args.checkpoint:
            load_policy(ctx.retriever, Path(args.checkpoint))
        rows = best_of_n(ctx, prompts, args.best_of, args.temperature, max_new_tokens, seed)
    for row in rows:
        print(json.dumps(row))
    return 0


def _add_report_parser(commands: Any) -> None:
    report = commands.add_parser("report", help="Write PNG plots and a self-contained HTML page for a run directory.")
    report.add_argument("run_dir", help="Run directory (the output_dir of larpo run).")
    report.add_argument(
        "--output", metavar="DIR", help="Folder for the plots and report.html (default RUN_DIR/report)."
    )


def command_report(args: argparse.Namespace) -> int:
    from larpo.report import write_report

    try:
        written = write_report(args.run_dir, args.output)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    for path in written:
        print(path)
    return 0


COMMANDS = {
    "run": command_run,
    "validate": command_validate,
    "plugins": command_plugins,
    "schema": command_schema,
    "eval-reranker": command_eval_reranker,
    "eval": command_eval,
    "generate": command_generate,
    "report": command_report,
}


def _setup_command_logging(command: str) -> None:
    """Send log lines to stderr, so that JSON on stdout stays parseable.

    ``run`` routes logging through tqdm itself. Hook traces (LARPO_TRACE_PLUGINS=1)
    are INFO lines, so tracing raises the level from WARNING to INFO.
    """
    from larpo.plugins import env_flag

    if command == "run":
        return
    if not any(getattr(handler, "larpo_cli", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.larpo_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if env_flag("LARPO_TRACE_PLUGINS") else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    from larpo.plugins import PluginError

    args = make_parser().parse_args(argv)
    _setup_command_logging(args.command)
    try:
        return COMMANDS[args.command](args)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        print("note: LARPO_STRICT_PLUGINS=1 makes plugin failures fatal; unset it to skip the plugin.", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
