"""`cto-harness case new ID` and `cto-harness case check ID`: write and prove fixture cases."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cto_harness.cli.parser import Subparsers
from cto_harness.inert import inert


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "case", help="start a new fixture case, or prove one sound",
        description="Fixture authoring: `case new` scaffolds harness/evals/cases/<id>/ "
                    "(case.toml, repo/, fake/solution/) with TODOs to replace; `case check` "
                    "proves a case sound with real runs of the pipeline.")
    sub = parser.add_subparsers(dest="case_command", required=True, metavar="{new,check}",
                                parser_class=type(parser))

    new = sub.add_parser("new", help="scaffold a new case with TODOs to replace",
                         description="Write harness/evals/cases/<id>/: a case.toml valid "
                                     "against schemas/case.schema.json, a tiny repo/ with a "
                                     "stub and its tests, and the fake engine's solution. It "
                                     "passes `case check` once its TODOs are replaced.")
    new.add_argument("case_id", metavar="ID", help="the new case's id ([a-z0-9][a-z0-9-]*)")
    new.add_argument("--title", help="the case's one-line title (default: a TODO)")
    new.add_argument("--harness-root", help="the harness/ folder (default: found from cwd)")
    new.set_defaults(func=cmd_new)

    check = sub.add_parser(
        "check", help="prove a case sound: tests fail as given, pass with the fake solution",
        description="Named checks: case_valid, verification_files_exist, "
                    "allowed_paths_exclude_tests, fake_solution_present, pristine_tests_fail "
                    "(a real run with no solution: the harness's tests must fail, unless "
                    "[authoring] pristine_tests_pass_because says why not), "
                    "fake_solution_passes (a real fake-engine run must pass), "
                    "allowed_paths_cover_solution, no_todo_markers. Exit 0 when all hold, "
                    "1 otherwise, 64 for a bad or unknown id.")
    check.add_argument("case_id", metavar="ID", help="the case to check")
    check.add_argument("--json", action="store_true",
                       help='print {"ok", "case_id", "checks": [{"name", "passed", "detail"}]}')
    check.add_argument("--keep-bundles", metavar="DIR",
                       help="keep the two runs' bundles in DIR (to `cto-harness view` them); "
                            "default: a temporary folder, removed")
    check.add_argument("--harness-root", help="the harness/ folder (default: found from cwd)")
    check.set_defaults(func=cmd_check)
    return parser


def _root(args: argparse.Namespace) -> Path:
    from cto_harness.core.fixtures import find_harness_root

    return Path(args.harness_root).resolve() if args.harness_root else find_harness_root()


def cmd_new(args: argparse.Namespace) -> int:
    from cto_harness.core.authoring import scaffold_case

    folder = scaffold_case(_root(args), args.case_id, args.title)
    print(folder)
    print(f"cto-harness case new: wrote {args.case_id}; replace the TODOs in case.toml, repo/ "
          f"and fake/solution/, then run: cto-harness case check {args.case_id}",
          file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from cto_harness.core.authoring import check_case

    result = check_case(_root(args), args.case_id,
                        keep_bundles=Path(args.keep_bundles) if args.keep_bundles else None,
                        progress=lambda text: print(text, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        for check in result.checks:
            print(inert(f"{'PASS' if check.passed else 'FAIL'}  {check.name:<30} {check.detail}"))
        for name, path in result.bundles.items():
            print(f"bundle ({name}): {path}")
        print(f"case {args.case_id}: {'sound' if result.ok else 'NOT sound'}", file=sys.stderr)
    return 0 if result.ok else 1
