"""The ``larpo`` command line: run, validate, plugins, schema and eval-reranker."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
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


COMMANDS = {
    "run": command_run,
    "validate": command_validate,
    "plugins": command_plugins,
    "schema": command_schema,
    "eval-reranker": command_eval_reranker,
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
