"""`cto-harness suite`: many cases and repeats in parallel worker processes; resumable."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cto_harness.cli.parser import (
    Subparsers,
    add_challenge,
    add_command,
    add_harness_root,
    harness_root,
    positive_int,
)
from cto_harness.core.suite_plan import parse_retry
from cto_harness.inert import inert


def add_parser(subparsers: Subparsers) -> None:
    suite = add_command(subparsers, "suite", "many cases and repeats in parallel; resumable",
                        "Run every (case, repeat) in worker processes, one run at a time each; "
                        "suite.json maps each to its bundle and holds pass@k per case. Exit 0 all "
                        "passed, 1 a run failed, 2 a run was blocked, 3 a run errored or the "
                        "suite was interrupted, 64 usage.")
    suite.add_argument("case_ids", nargs="*", metavar="CASE",
                       help="cases (default: a resumed suite's own, else all)")
    suite.add_argument("--engine", metavar="NAME", help="the engine of every run (default: fake)")
    suite.add_argument("--repeat", type=positive_int, metavar="N",
                       help="runs per case (default: a resumed suite's own, else 1)")
    suite.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                       help="runs at once, each in its own process (default: the cores)")
    suite.add_argument("--json", action="store_true", help="print suite.json on stdout")
    suite.add_argument("--fresh", action="store_true",
                       help="rerun every run, also those that already have a verifying bundle")
    suite.add_argument("--retry", type=parse_retry, default=frozenset(), metavar="VERDICTS",
                       help="rerun the earlier runs that ended so: a comma-separated list of "
                            "failed, blocked, error (runs never finished are run anyway)")
    suite.add_argument("--suite-dir", type=Path, metavar="DIR",
                       help="where suite.json and the bundles go; an existing one is resumed "
                            "(default: a new folder under $CTO_HARNESS_HOME/suites)")
    add_challenge(suite)
    add_harness_root(suite)
    suite.set_defaults(handler=_suite)


def _suite(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import case_directory, list_case_ids
    from cto_harness.core.suite import default_suite_dir, load_previous, run_suite, summary_table
    from cto_harness.core.suite_plan import resolve_plan
    from cto_harness.engines import DEFAULT_ENGINE, get_engine
    from cto_harness.settings import Settings

    root = harness_root(args)
    engine = get_engine(args.engine or DEFAULT_ENGINE).name
    settings = Settings.from_env()
    suite_dir = args.suite_dir or default_suite_dir(settings.home, engine)
    # A resumed suite runs its own cases and repeats unless others are named.
    case_ids, repeat = resolve_plan(load_previous(suite_dir.absolute()), args.case_ids,
                                    args.repeat, lambda: list_case_ids(root))
    for case_id in case_ids:
        case_directory(root, case_id)  # a bad id is one usage line, before anything runs
    print(f"cto-harness suite: {len(case_ids)} cases x {repeat} repeats, {args.jobs} jobs, "
          f"{engine} engine -> {suite_dir}", file=sys.stderr)
    outcome = run_suite(case_ids, harness_root=root, engine=engine, repeat=repeat,
                        jobs=args.jobs, fresh=args.fresh, retry=args.retry,
                        challenge=args.challenge, suite_dir=suite_dir)
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
