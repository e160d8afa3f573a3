"""`cto-harness suite`: many cases and repeats in parallel worker processes; resumable."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cto_harness.cli.parser import (
    Subparsers,
    add_command,
    add_harness_root,
    harness_root,
    positive_int,
)
from cto_harness.inert import inert


def add_parser(subparsers: Subparsers) -> None:
    suite = add_command(subparsers, "suite", "many cases and repeats in parallel; resumable",
                        "Run every (case, repeat) in worker processes, one run at a time each; "
                        "suite.json maps each to its bundle and holds pass@k per case. Exit 0 all "
                        "passed, 1 a run failed, 2 a run was blocked, 3 a run errored or the "
                        "suite was interrupted, 64 usage.")
    suite.add_argument("case_ids", nargs="*", metavar="CASE", help="cases (default: all)")
    suite.add_argument("--engine", metavar="NAME", help="the engine of every run (default: fake)")
    suite.add_argument("--repeat", type=positive_int, default=1, metavar="N",
                       help="runs per case (default 1)")
    suite.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                       help="runs at once, each in its own process (default: the cores)")
    suite.add_argument("--json", action="store_true", help="print suite.json on stdout")
    suite.add_argument("--fresh", action="store_true",
                       help="rerun repeats that already have a verifying bundle")
    suite.add_argument("--suite-dir", type=Path, metavar="DIR",
                       help="where suite.json and the bundles go; an existing one is resumed "
                            "(default: a new folder under $CTO_HARNESS_HOME/suites)")
    add_harness_root(suite)
    suite.set_defaults(handler=_suite)


def _suite(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import case_directory, list_case_ids
    from cto_harness.core.suite import default_suite_dir, run_suite, summary_table
    from cto_harness.engines import DEFAULT_ENGINE, get_engine
    from cto_harness.settings import Settings

    root = harness_root(args)
    case_ids = list(dict.fromkeys(args.case_ids)) or list_case_ids(root)
    for case_id in case_ids:
        case_directory(root, case_id)  # a bad id is one usage line, before anything runs
    engine = get_engine(args.engine or DEFAULT_ENGINE).name
    settings = Settings.from_env()
    suite_dir = args.suite_dir or default_suite_dir(settings.home, engine)
    print(f"cto-harness suite: {len(case_ids)} cases x {args.repeat} repeats, {args.jobs} jobs, "
          f"{engine} engine -> {suite_dir}", file=sys.stderr)
    outcome = run_suite(case_ids, harness_root=root, engine=engine, repeat=args.repeat,
                        jobs=args.jobs, fresh=args.fresh, suite_dir=suite_dir)
    table = inert(summary_table(outcome.data), multiline=True)
    if args.json:
        print(table, file=sys.stderr)
        sys.stdout.write(json.dumps(outcome.data, indent=2) + "\n")
    else:
        print(table)
    if outcome.interrupted:
        print("cto-harness suite: interrupted; finished bundles are intact, run the same command "
              f"with --suite-dir {outcome.suite_dir} to resume", file=sys.stderr)
    return outcome.exit_code
