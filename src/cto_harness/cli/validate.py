"""`cto-harness validate adapter|routes`: the scenario validator of the Case adapter and the
route-record validator. `harness/runner/validate-case-provider-adapter.py` and
`tools/validate_cto_child.py` are thin wrappers over these."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cto_harness.cli.parser import Subparsers, add_command, add_json, add_subcommands


def add_parser(subparsers: Subparsers) -> None:
    validate = add_command(subparsers, "validate", "run the adapter or the route validator")
    commands = add_subcommands(validate, "validate_command")

    adapter = commands.add_parser(
        "adapter", help="every fail-closed scenario of an engine's adapter",
        description="Run every fail-closed scenario of an engine's adapter (--engine: case, "
                    "fake, pi) for real, with providers admitted in a temporary home; exit 0 "
                    "only if all pass.")
    adapter.add_argument("--harness-root", type=_adapter_root, metavar="DIR",
                         help="the repository's harness/ folder (default: found from the "
                              "current directory)")
    add_json(adapter, 'print {"ok", "checks": [{"name", "passed", "detail", "duration_ms"}]}')
    adapter.add_argument("--check", action="append", metavar="NAME",
                         help="run only this check (repeatable; default: all)")
    adapter.add_argument("--engine", default="case", metavar="NAME",
                         help="the engine whose scenarios run: case (default), fake or pi")
    adapter.set_defaults(handler=_adapter)

    routes = commands.add_parser(
        "routes", help="the route records in docs/route/",
        description="Check the route records' front matter and work items, and that no record "
                    "claims more than a verifying bundle and the admission registry show.")
    routes.add_argument("--route-dir", type=Path, metavar="DIR",
                        help="the records' folder (default: docs/route beside the harness/ "
                             "folder found from the current directory)")
    add_json(routes)
    routes.set_defaults(handler=_routes)


def _adapter_root(value: str) -> Path:
    root = Path(value).resolve()
    if not (root / "evals" / "cases").is_dir() or \
            not (root / "providers" / "case" / "policy.toml").is_file():
        raise argparse.ArgumentTypeError(
            f"{value} is not a harness folder (needs evals/cases/ and providers/case/policy.toml)")
    return root


def _adapter(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import find_harness_root
    from cto_harness.errors import UsageError
    from cto_harness.validators.adapter import run_checks
    from cto_harness.validators.engine_checks import checks_for

    try:
        checks = checks_for(args.engine)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    unknown = sorted(set(args.check or []) - set(checks))
    if unknown:
        raise UsageError(f"unknown check {unknown[0]!r} (known: {', '.join(sorted(checks))})")
    root = args.harness_root or _adapter_root(str(find_harness_root()))
    started = time.monotonic()
    results = run_checks(root, args.check, checks)
    ok = all(r.passed for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [r.to_dict() for r in results],
                          "duration_ms": int((time.monotonic() - started) * 1000)}, indent=2))
    else:
        width = max(len(r.name) for r in results)
        for r in results:
            print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.duration_ms:>6} ms  "
                  f"{r.detail}")
        print(f"\n{'OK' if ok else 'FAILED'}: {sum(r.passed for r in results)}/{len(results)} "
              f"checks passed in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


def _routes(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import find_harness_root
    from cto_harness.settings import Settings
    from cto_harness.validators.routes import validate_routes

    route_dir: Path = args.route_dir or find_harness_root().parent / "docs" / "route"
    started = time.monotonic()
    records, violations = validate_routes(route_dir, Settings.from_env())
    ok = not violations
    if args.json:
        print(json.dumps({
            "ok": ok,
            "route_dir": str(route_dir),
            "records": len(records),
            "work_items": sum(len(r.items) for r in records),
            "violations": [{"file": v.file, "line": v.line, "message": v.message}
                           for v in violations],
            "duration_ms": int((time.monotonic() - started) * 1000),
        }, indent=2))
    else:
        for violation in violations:
            print(violation)
        items = sum(len(r.items) for r in records)
        print(f"{'OK' if ok else 'FAILED'}: {len(records)} route records, {items} work items, "
              f"{len(violations)} violations")
    return 0 if ok else 1
