"""The ``larpo`` command line: run, validate and plugins."""

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
    run.add_argument("--resume", action="store_true", help="Continue the run in output_dir at its first unfinished phase.")

    validate = commands.add_parser("validate", help="Check a spec (every error at once) without loading weights.")
    _add_spec_arguments(validate)

    plugins = commands.add_parser("plugins", help="List installed plugins and their components.")
    plugins.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    return parser


def _resolve(args: argparse.Namespace) -> Any:
    from larpo.plugins import get_host
    from larpo.spec import resolve_spec

    host = get_host()
    return host, resolve_spec(args.spec, args.overrides, host.registries)


def _report_spec_error(error: Exception, host: Any | None = None) -> int:
    print(str(error), file=sys.stderr)
    if host is not None:
        for record in host.failed_plugins():
            print(
                f"note: plugin {record.name!r} ({record.distribution} {record.version}) "
                f"{record.status}: {record.error}",
                file=sys.stderr,
            )
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


def command_plugins(args: argparse.Namespace) -> int:
    from larpo.plugins import get_host

    host = get_host()
    rows = []
    for record in host.records.values():
        rows.append(
            {
                "name": record.name,
                "distribution": record.distribution,
                "version": record.version,
                "entry_point": record.entry_point,
                "status": record.status,
                "error": record.error,
                "hooks": record.hooks,
                "components": record.components,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for kind, registry in host.registries.items():
        for entry in registry:
            print(f"{kind:<10} {entry.name:<16} {entry.distribution} {entry.version}  {entry.summary}")
    for record in host.failed_plugins():
        print(f"FAILED     {record.name:<16} {record.distribution} {record.version}  {record.status}: {record.error}")
    return 0


COMMANDS = {"run": command_run, "validate": command_validate, "plugins": command_plugins}


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
