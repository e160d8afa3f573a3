"""`cto-harness run` (one Stage 2 run) and `cto-harness cases` (the fixture cases)."""

from __future__ import annotations

import argparse
import os
import sys

from cto_harness.cli.parser import (
    Subparsers,
    add_challenge,
    add_command,
    add_harness_root,
    harness_root,
)


def add_parser(subparsers: Subparsers) -> None:
    run = add_command(subparsers, "run", "one Stage 2 run of a fixture case; writes a bundle",
                      "Copy a fixture case into a fresh workspace, run the engine on it, verify "
                      "the result with the case's own tests and write a signed evidence bundle. "
                      "Exit 0 pass, 1 fail, 2 blocked, 3 harness error, 64 usage error.")
    run.add_argument("case_id", metavar="CASE",
                     help="a case under harness/evals/cases ([a-z0-9][a-z0-9-]*)")
    run.add_argument("--engine", metavar="NAME",
                     help="the engine: fake (default, offline, deterministic), case (WorkOS Case, "
                          "needs an admitted provider), or one an installed package registers")
    run.add_argument("--json", action="store_true", help="print report.json on stdout")
    add_challenge(run)
    add_harness_root(run)
    run.set_defaults(handler=_run)

    cases = add_command(subparsers, "cases", "list the fixture cases")
    add_harness_root(cases)
    cases.set_defaults(handler=_cases)


def _run(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import case_directory
    from cto_harness.core.run import execute_run
    from cto_harness.engines import DEFAULT_ENGINE, get_engine
    from cto_harness.settings import Settings

    # A bad case id, engine or setting is one usage line, before anything else.
    root = harness_root(args)
    case_directory(root, args.case_id)
    engine = get_engine(args.engine or DEFAULT_ENGINE)
    settings = Settings.from_env()
    engine.load_settings(os.environ)
    print(f"cto-harness: running {args.case_id} with the {engine.name} engine…", file=sys.stderr)
    result = execute_run(args.case_id, engine.name, harness_root=root, settings=settings,
                         challenge=args.challenge)
    report = result.report
    if args.json:
        sys.stdout.write((result.run_dir / "report.json").read_text(encoding="utf-8"))
    from cto_harness.inert import inert

    # Blocker messages name provider files and output: shown inert (no escape sequence acts).
    blockers = "".join(f"\n  blocker {inert(b.code)}: {inert(b.message)}"
                       for b in report.blockers)
    if failed := [name for name, held in report.pass_conditions.items() if not held]:
        blockers += f"\n  failed conditions: {', '.join(failed)}"
    print(
        f"cto-harness: {report.case_id} [{report.engine}] verdict {report.verdict.upper()}"
        f" in {report.timing.duration_ms} ms{blockers}\n  bundle: {result.run_dir}\n"
        f"  readable report: {result.run_dir / 'report.md'}",
        file=sys.stderr,
    )
    return result.exit_code


def _cases(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import list_case_ids

    for case_id in list_case_ids(harness_root(args)):
        print(case_id)
    return 0
