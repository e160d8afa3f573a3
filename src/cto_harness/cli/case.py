"""`cto-harness case new ID` and `cto-harness case check ID`: write and prove fixture cases."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cto_harness.cli.parser import (
    Subparsers,
    add_command,
    add_harness_root,
    add_json,
    add_subcommands,
    harness_root,
    print_json,
)
from cto_harness.inert import inert


def add_parser(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers, "case", "start a new fixture case, or prove one sound",
        "Fixture authoring: `case new` scaffolds harness/evals/cases/<id>/ (case.toml, repo/, "
        "fake/solution/) with TODOs to replace; `case check` proves a case sound with real "
        "runs of the pipeline.")
    sub = add_subcommands(parser, "case_command")

    new = add_command(sub, "new", "scaffold a new case with TODOs to replace",
                      "Write harness/evals/cases/<id>/: a case.toml valid against "
                      "schemas/case.schema.json, a tiny repo/ with a stub and its tests, and the "
                      "fake engine's solution. It passes `case check` once its TODOs are "
                      "replaced.", handler=cmd_new)
    new.add_argument("case_id", metavar="ID", help="the new case's id ([a-z0-9][a-z0-9-]*)")
    new.add_argument("--title", help="the case's one-line title (default: a TODO)")
    add_harness_root(new)

    check = add_command(
        sub, "check", "prove a case sound: tests fail as given, pass with the fake solution",
        "Named checks: case_valid, verification_files_exist, allowed_paths_exclude_tests, "
        "fake_solution_present, pristine_tests_fail (a real run with no solution: the "
        "harness's tests must fail, unless [authoring] pristine_tests_pass_because says why "
        "not), fake_solution_passes (a real fake-engine run must pass), "
        "allowed_paths_cover_solution, no_todo_markers. Exit 0 when all hold, 1 otherwise, 64 "
        "for a bad or unknown id.", handler=cmd_check)
    check.add_argument("case_id", metavar="ID", help="the case to check")
    add_json(check, 'print {"ok", "case_id", "checks": [{"name", "passed", "detail"}]}')
    check.add_argument("--keep-bundles", metavar="DIR",
                       help="keep the two runs' bundles in DIR (to `cto-harness view` them); "
                            "default: a temporary folder, removed")
    add_harness_root(check)


def cmd_new(args: argparse.Namespace) -> int:
    from cto_harness.core.authoring import scaffold_case

    folder = scaffold_case(harness_root(args), args.case_id, args.title)
    print(folder)
    print(f"cto-harness case new: wrote {args.case_id}; replace the TODOs in case.toml, repo/ "
          f"and fake/solution/, then run: cto-harness case check {args.case_id}",
          file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from cto_harness.core.authoring import check_case

    result = check_case(harness_root(args), args.case_id,
                        keep_bundles=Path(args.keep_bundles) if args.keep_bundles else None,
                        progress=lambda text: print(text, file=sys.stderr, flush=True))
    if args.json:
        print_json(result.to_json())
    else:
        for check in result.checks:
            print(inert(f"{'PASS' if check.passed else 'FAIL'}  {check.name:<30} {check.detail}"))
        for name, path in result.bundles.items():
            print(f"bundle ({name}): {path}")
        print(f"case {args.case_id}: {'sound' if result.ok else 'NOT sound'}", file=sys.stderr)
    return 0 if result.ok else 1
