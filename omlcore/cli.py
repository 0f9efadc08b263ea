"""The ``omlcore`` command line.

``omlcore --help`` and ``omlcore plugins list`` import no plugin and no torch; ``omlcore check``
imports only the plugins its config names. Plugins add sub-commands through the
``omlcore_add_commands`` hook. Errors print as one paragraph on stderr with a non-zero exit;
``--debug`` adds the traceback.

Exit codes: 0 success, 1 failure (broken plugins, schema drift, a plugin command's own failure),
2 invalid input (a bad config, bad overrides, bad command-line usage).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omlcore import __version__
from omlcore.errors import ConfigError, OmlcoreError

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAIL, EXIT_INVALID = 0, 1, 2


def _print_table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...], notes: Sequence[str] | None = None) -> None:
    """Columns padded to the widest cell; ``notes[i]`` (if any) printed indented under row ``i``."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for i, row in enumerate([header, *rows]):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if notes and i > 0 and notes[i - 1]:
            print(f"    {notes[i - 1]}")


def _cmd_plugins_list(args: argparse.Namespace) -> int:
    from omlcore.plugins import installed_hook_plugins
    from omlcore.registry import KINDS, disabled_from_env, get_registry, normalize_dist

    registry = get_registry()
    kinds = [args.kind] if args.kind else list(KINDS)
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        for name, offered in registry.entries(kind).items():
            for e in offered:
                rows.append(
                    {
                        "kind": e.kind,
                        "name": name,
                        "distribution": e.distribution or "-",
                        "version": e.version or "-",
                        "value": e.value,
                        "conflict": len(offered) > 1,
                    }
                )
    if not args.kind:
        disabled = disabled_from_env()
        for h in installed_hook_plugins():
            off = normalize_dist(h.name) in disabled or normalize_dist(h.distribution or "") in disabled
            rows.append(
                {
                    "kind": "hooks",
                    "name": h.name,
                    "distribution": h.distribution or "-",
                    "version": h.version or "-",
                    "value": h.value + (" (disabled)" if off else ""),
                    "conflict": False,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print('No omlcore plugins are installed. Install some with: pip install "omlcore[standard]"')
        return EXIT_OK
    table = [
        (r["kind"], r["name"] + (" (CONFLICT)" if r["conflict"] else ""), r["distribution"], r["version"]) for r in rows
    ]
    _print_table(table, ("KIND", "NAME", "DISTRIBUTION", "VERSION"))
    return EXIT_OK


def _cmd_plugins_check(args: argparse.Namespace) -> int:
    from omlcore.plugins import get_plugin_manager
    from omlcore.registry import get_registry

    results = get_registry().check()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failures are listed below instead
        pm = get_plugin_manager()
    bad = [r for r in results if not r.ok]
    if args.json:
        payload = [r.__dict__ for r in results] + [
            {"kind": "hooks", "name": e.name, "origin": e.origin, "ok": True, "message": ""} for e in pm.loaded
        ]
        payload += [
            {"kind": "hooks", "name": e.name, "origin": e.origin, "ok": False, "message": why} for e, why in pm.failures
        ]
        print(json.dumps(payload, indent=2))
    else:
        rows = [("ok" if r.ok else "FAIL", r.kind, r.name, r.origin, r.message) for r in results]
        rows += [("ok", "hooks", e.name, e.origin, "") for e in pm.loaded]
        rows += [("FAIL", "hooks", e.name, e.origin, why) for e, why in pm.failures]
        _print_table([row[:4] for row in rows], ("STATUS", "KIND", "NAME", "FROM"), notes=[row[4] for row in rows])
        total = len(results) + len(pm.loaded) + len(pm.failures)
        failed = len(bad) + len(pm.failures)
        print(f"\n{total} plugin(s) checked, {failed} broken.")
    return EXIT_FAIL if bad or pm.failures else EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from omlcore.config import load_config
    from omlcore.errors import ConfigValidationError

    try:
        config = load_config(args.config, args.overrides, check_plugins=not args.structure_only)
    except ConfigValidationError as exc:
        if args.debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        print(f"{args.config}: invalid config, {len(exc.issues)} problem(s):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_INVALID
    if args.print:
        import yaml

        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    phases = "structure" if args.structure_only else "structure and plugins"
    print(f"{args.config}: valid {config.pipeline} config ({phases} checked).")  # type: ignore[attr-defined]
    return EXIT_OK


def _cmd_schema_export(args: argparse.Namespace) -> int:
    from omlcore.schema_export import check_schemas, write_schemas

    if args.check:
        stale = check_schemas(args.directory, distributions=args.distribution)
        if stale:
            print(
                f"Schemas in {args.directory} are out of date: {', '.join(stale)}. "
                f"Regenerate them with: omlcore schema export {args.directory}"
                + "".join(f" --distribution {d}" for d in args.distribution or ()),
                file=sys.stderr,
            )
            return EXIT_FAIL
        print(f"Schemas in {args.directory} are up to date.")
        return EXIT_OK
    for path in write_schemas(args.directory, distributions=args.distribution):
        print(f"wrote {path}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The CLI parser, with the sub-commands plugins add."""
    parser = argparse.ArgumentParser(
        prog="omlcore",
        description="Train and validate embedding models for retrieval. Components come from plugins.",
        epilog="Docs: docs/index.md. Errors show one paragraph; add --debug for the traceback.",
    )
    parser.add_argument("--version", action="version", version=f"omlcore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    plugins = sub.add_parser("plugins", help="list or check installed plugins")
    psub = plugins.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND", required=True)
    plist = psub.add_parser("list", help="installed components and hook plugins (imports nothing)")
    plist.add_argument("--kind", help="only this kind (loss, miner, ...)")
    plist.add_argument("--json", action="store_true", help="machine-readable output")
    plist.set_defaults(func=_cmd_plugins_list)
    pcheck = psub.add_parser("check", help="import every plugin and check it against its protocol")
    pcheck.add_argument("--json", action="store_true", help="machine-readable output")
    pcheck.set_defaults(func=_cmd_plugins_check)

    check = sub.add_parser(
        "check",
        help="validate a pipeline config (exit 0 valid, 2 invalid)",
        description="Validate a config: its structure, then every named plugin and its args.",
    )
    check.add_argument("config", help="YAML config file")
    check.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.max_epochs=3 ~logger")
    check.add_argument("--structure-only", action="store_true", help="skip the plugin phase")
    check.add_argument("--print", action="store_true", help="print the resolved config with defaults")
    check.set_defaults(func=_cmd_check)

    schema = sub.add_parser("schema", help="JSON Schemas of the configs")
    ssub = schema.add_subparsers(dest="schema_command", metavar="SUBCOMMAND", required=True)
    export = ssub.add_parser("export", help="write train/validate/predict schemas into DIR")
    export.add_argument("directory", type=Path, metavar="DIR")
    export.add_argument("--check", action="store_true", help="write nothing; exit 1 if DIR is out of date")
    export.add_argument(
        "--distribution",
        action="append",
        metavar="NAME",
        help="include only the plugins of this distribution (repeatable; default: all installed)",
    )
    export.set_defaults(func=_cmd_schema_export)

    from omlcore.plugins import get_plugin_manager

    get_plugin_manager().hook.omlcore_add_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if hasattr(args, "overrides"):  # overrides may come before or after options: `check CFG --print a=1`
            args.overrides += [e for e in extra if not e.startswith("-")]
            extra = [e for e in extra if e.startswith("-")]
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_OK
        return int(args.func(args))
    except ConfigError as exc:
        if debug:
            traceback.print_exc()
        print(f"omlcore: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except OmlcoreError as exc:
        if debug:
            traceback.print_exc()
        print(f"omlcore: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("omlcore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
