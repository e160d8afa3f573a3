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
from cto_harness.executors.choose import EXECUTORS
from cto_harness.inert import inert


def non_negative_int(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {value!r}")
    return int(value)


def add_parser(subparsers: Subparsers) -> None:
    suite = add_command(subparsers, "suite", "many cases and repeats in parallel (here or on Ray); resumable",
                        "Run every (case, repeat) in worker processes, one run at a time each; "
                        "suite.json maps each to its bundle and holds pass@k per case. Exit 0 all "
                        "passed, 1 a run failed, 2 a run was blocked, 3 a run errored or the "
                        "suite was interrupted, 64 usage.")
    suite.add_argument("case_ids", nargs="*", metavar="CASE",
                       help="cases (default: a resumed suite's own, else all)")
    suite.add_argument("--engine", metavar="NAME[,NAME...]",
                       help="the engine of every run (default: fake); several, comma-separated, "
                       "run one suite each under the suite folder and compare pass@k side by side "
                       "(engines.json)")
    suite.add_argument("--repeat", type=positive_int, metavar="N",
                       help="runs per case (default: a resumed suite's own, else 1)")
    suite.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                       help="runs at once, each in its own process (default: the cores; with "
                            "--executor ray: the cluster's CPUs)")
    suite.add_argument("--executor", default="local", choices=EXECUTORS,
                       help="local worker processes (default) or one Ray task per run on a Ray "
                            "cluster (needs: pip install 'cto-harness[ray]' on every node)")
    suite.add_argument("--address", metavar="HOST:PORT",
                       help="with --executor ray: the cluster's address (default: $RAY_ADDRESS, "
                            "else a private single-node Ray on this machine)")
    suite.add_argument("--node-retries", dest="retries", type=non_negative_int, metavar="N",
                       help="with --executor ray: how many more times a run whose node or task "
                            "died (node_lost) is submitted (default 2)")
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
    from cto_harness.executors.choose import make_executor
    from cto_harness.settings import Settings

    root = harness_root(args)
    names = [n.strip() for n in (args.engine or DEFAULT_ENGINE).split(",")]
    if len(names) > 1:
        return _compare(args, root, names)
    engine = get_engine(names[0]).name
    executor = make_executor(args.executor, address=args.address, retries=args.retries)
    settings = Settings.from_env()
    suite_dir = args.suite_dir or default_suite_dir(settings.home, engine)
    # A resumed suite runs its own cases and repeats unless others are named.
    case_ids, repeat = resolve_plan(load_previous(suite_dir.absolute()), args.case_ids,
                                    args.repeat, lambda: list_case_ids(root))
    for case_id in case_ids:
        case_directory(root, case_id)  # a bad id is one usage line, before anything runs
    # Ray's default (None) is the cluster's CPUs: one task per free CPU, wherever it is.
    jobs = args.jobs if args.jobs is not None or args.executor == "ray" else os.cpu_count() or 1
    print(f"cto-harness suite: {len(case_ids)} cases x {repeat} repeats, "
          f"{jobs or 'cluster'} jobs, {engine} engine, {args.executor} executor -> {suite_dir}",
          file=sys.stderr)
    outcome = run_suite(case_ids, harness_root=root, engine=engine, repeat=repeat,
                        jobs=jobs, fresh=args.fresh, retry=args.retry,
                        challenge=args.challenge, suite_dir=suite_dir, executor=executor)
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


def _compare(args: argparse.Namespace, root: Path, names: list[str]) -> int:
    from cto_harness.core.engine_compare import compare_engines, comparison_table
    from cto_harness.core.fixtures import case_directory, list_case_ids
    from cto_harness.core.suite import default_suite_dir
    from cto_harness.engines import get_engine
    from cto_harness.errors import UsageError
    from cto_harness.settings import Settings

    engines = [get_engine(name).name for name in names if name]
    if len(set(engines)) != len(engines) or len(engines) != len(names):
        raise UsageError(f"--engine lists an engine twice or an empty name: {args.engine!r}")
    case_ids = list(dict.fromkeys(args.case_ids)) or list_case_ids(root)
    for case_id in case_ids:
        case_directory(root, case_id)  # a bad id is one usage line, before anything runs
    if args.executor != "local":
        raise UsageError("several engines (--engine a,b) run on the local executor only")
    repeat = args.repeat or 1
    jobs = args.jobs or os.cpu_count() or 1
    suite_dir = args.suite_dir or default_suite_dir(Settings.from_env().home, "-".join(engines))
    print(f"cto-harness suite: {len(case_ids)} cases x {repeat} repeats under "
          f"{', '.join(engines)}, {jobs} jobs -> {suite_dir}", file=sys.stderr)
    outcome = compare_engines(case_ids, harness_root=root, engines=engines, repeat=repeat,
                              jobs=jobs, fresh=args.fresh, retry=args.retry,
                              challenge=args.challenge, suite_dir=suite_dir)
    table = comparison_table(outcome.data)
    if args.json:
        print(table, file=sys.stderr)
        sys.stdout.write(json.dumps(outcome.data, indent=2) + "\n")
    else:
        print(table)
    if outcome.interrupted:
        print("cto-harness suite: interrupted; run the same command with --suite-dir "
              f"{outcome.suite_dir} to resume", file=sys.stderr)
    return outcome.exit_code
