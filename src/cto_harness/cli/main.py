"""`cto-harness`: a thin command line over the package's functions. Exit codes follow DESIGN
section 2: 0 pass, 1 fail, 2 blocked, 3 harness error, 64 usage error (one line on stderr)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from cto_harness import __version__
from cto_harness.errors import EXIT_ERROR, EXIT_USAGE, HarnessError, Interrupted, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a bad flag; the contract says 64 with one line."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted("SIGTERM")


def cmd_run(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import case_directory, find_harness_root
    from cto_harness.core.run import execute_run

    root = Path(args.harness_root).resolve() if args.harness_root else find_harness_root()
    case_directory(root, args.case_id)  # a bad id is one usage line, before anything else
    print(f"cto-harness: running {args.case_id} with the {args.engine} engine…", file=sys.stderr)
    result = execute_run(args.case_id, args.engine, harness_root=root)
    report = result.report
    if args.json:
        sys.stdout.write((result.run_dir / "report.json").read_text(encoding="utf-8"))
    blockers = "".join(f"\n  blocker {b.code}: {b.message}" for b in report.blockers)
    print(
        f"cto-harness: {report.case_id} [{report.engine}] verdict {report.verdict.upper()}"
        f" in {report.timing.duration_ms} ms{blockers}\n  bundle: {result.run_dir}\n"
        f"  readable report: {result.run_dir / 'report.md'}",
        file=sys.stderr,
    )
    return result.exit_code


def cmd_verify(args: argparse.Namespace) -> int:
    from cto_harness.evidence.verify import BundleInvalid, verify_bundle

    try:
        report = verify_bundle(Path(args.run_dir),
                               Path(args.public_key) if args.public_key else None)
    except BundleInvalid as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        print(f"cto-harness verify: FAILED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, "run_id": report.run_id, "verdict": report.verdict}))
    else:
        print(f"cto-harness verify: OK: {report.run_id} (verdict {report.verdict}); "
              f"{len(report.artifacts)} artifacts re-hashed, signature checked")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from cto_harness.config import config_command

    return config_command(args)


def cmd_suite(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import case_directory, find_harness_root, list_case_ids
    from cto_harness.core.suite import default_suite_dir, run_suite, summary_table
    from cto_harness.settings import Settings

    root = Path(args.harness_root).resolve() if args.harness_root else find_harness_root()
    case_ids = list(dict.fromkeys(args.case_ids)) or list_case_ids(root)
    for case_id in case_ids:
        case_directory(root, case_id)  # a bad id is one usage line, before anything runs
    if args.repeat < 1 or args.jobs < 1:
        raise UsageError("--repeat and --jobs must be at least 1")
    settings = Settings.from_env()
    suite_dir = Path(args.suite_dir) if args.suite_dir else default_suite_dir(settings.home,
                                                                              args.engine)
    print(f"cto-harness suite: {len(case_ids)} cases x {args.repeat} repeats, {args.jobs} jobs, "
          f"{args.engine} engine -> {suite_dir}", file=sys.stderr)
    outcome = run_suite(case_ids, harness_root=root, engine=args.engine, repeat=args.repeat,
                        jobs=args.jobs, fresh=args.fresh, suite_dir=suite_dir)
    table = summary_table(outcome.data)
    if args.json:
        print(table, file=sys.stderr)
        sys.stdout.write(json.dumps(outcome.data, indent=2) + "\n")
    else:
        print(table)
    if outcome.interrupted:
        print("cto-harness suite: interrupted; finished bundles are intact, run the same command "
              f"with --suite-dir {outcome.suite_dir} to resume", file=sys.stderr)
    return outcome.exit_code


def cmd_schemas(args: argparse.Namespace) -> int:
    from cto_harness.schemas import check_schemas, write_schemas

    target = Path(args.dir)
    if args.check:
        stale = check_schemas(target)
        for name in stale:
            print(f"stale or missing schema: {target / name}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(target):
        print(path)
    return 0


def cmd_cases(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import find_harness_root, list_case_ids

    root = Path(args.harness_root).resolve() if args.harness_root else find_harness_root()
    for case_id in list_case_ids(root):
        print(case_id)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import find_harness_root
    from cto_harness.validators.health import health

    root = Path(args.harness_root).resolve() if args.harness_root else find_harness_root()
    result = health(root.parent, root)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, part in result["parts"].items():
            print(f"{part['status'].upper():<7} {name:<18} {part['duration_ms']:>6} ms")
        print(f"provider: {result['provider']}")
        print(f"{'OK' if result['ok'] else 'FAILED'} in {result['duration_ms'] / 1000:.1f}s")
    return 0 if result["ok"] else 1


def cmd_provider(args: argparse.Namespace) -> int:
    from cto_harness.cli.provider import main as provider_main

    return provider_main(["provider", *args.arguments])


def build_parser() -> argparse.ArgumentParser:
    from cto_harness.engines import engine_names

    parser = _Parser(prog="cto-harness", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cto-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="one Stage 2 run of a fixture case; writes a bundle")
    run.add_argument("case_id", help="a case under harness/evals/cases ([a-z0-9][a-z0-9-]*)")
    run.add_argument("--engine", default="fake", choices=engine_names(),
                     help="fake (default, offline) or case (needs an admitted provider)")
    run.add_argument("--json", action="store_true", help="print report.json on stdout")
    run.add_argument("--harness-root", help="the harness/ folder (default: found from cwd)")
    run.set_defaults(func=cmd_run)

    suite = sub.add_parser("suite", help="many cases and repeats in parallel processes; resumable")
    suite.add_argument("case_ids", nargs="*", metavar="CASE", help="cases (default: all)")
    suite.add_argument("--engine", default="fake", choices=engine_names())
    suite.add_argument("--repeat", type=int, default=1, help="runs per case (default 1)")
    suite.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                       help="runs at once, each in its own process (default: the cores)")
    suite.add_argument("--json", action="store_true", help="print suite.json on stdout")
    suite.add_argument("--fresh", action="store_true",
                       help="rerun repeats that already have a verifying bundle")
    suite.add_argument("--suite-dir", help="where suite.json and the bundles go; an existing "
                       "one is resumed (default: a new folder under $CTO_HARNESS_HOME/suites)")
    suite.add_argument("--harness-root", help="the harness/ folder (default: found from cwd)")
    suite.set_defaults(func=cmd_suite)

    verify = sub.add_parser("verify", help="re-check a bundle's digests, ids and freshness")
    verify.add_argument("run_dir")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--public-key", help="the signer's public key (PEM); default: this "
                        "machine's $CTO_HARNESS_HOME/keys/evidence-ed25519.pub")
    verify.set_defaults(func=cmd_verify)

    schemas = sub.add_parser("schemas", help="write (or --check) the JSON Schemas in schemas/")
    schemas.add_argument("--dir", default="schemas")
    mode = schemas.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the schemas (the default)")
    mode.add_argument("--check", action="store_true", help="exit 1 if a schema is stale")
    schemas.set_defaults(func=cmd_schemas)

    cases = sub.add_parser("cases", help="list the fixture cases")
    cases.add_argument("--harness-root")
    cases.set_defaults(func=cmd_cases)

    config = sub.add_parser("config", help="show the configuration; add target repositories")
    config_sub = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    config_sub.add_parser("show", help="settings, target repositories, isolation tiers (JSON)")
    add = config_sub.add_parser("add-target", help="hide a path from every provider")
    add.add_argument("path")
    config.set_defaults(func=cmd_config)

    health = sub.add_parser("health", help="route and adapter validators, fake lane, admission, "
                            "isolation: exit 0 only if all hold")
    health.add_argument("--json", action="store_true")
    health.add_argument("--harness-root")
    health.set_defaults(func=cmd_health)

    # Parsed by the provider module itself, imported only when used (it loads the build route).
    provider = sub.add_parser("provider", add_help=False,
                              help="build, admit, verify and list provider binaries "
                                   "(cto-harness provider --help)")
    provider.add_argument("arguments", nargs=argparse.REMAINDER)
    provider.set_defaults(func=cmd_provider)

    from cto_harness.cli import case, runs, view  # each builds its own parser (viewer, issue 15)
    for module in (view, runs, case):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["provider"]:
        # Its own parser, so that `provider --help` and its usage errors are its own.
        return cmd_provider(argparse.Namespace(arguments=argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        handler = getattr(args, "func", None) or args.handler
        return int(handler(args))
    except UsageError as exc:
        print(f"cto-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (Interrupted, KeyboardInterrupt):
        print("cto-harness: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except HarnessError as exc:
        print(f"cto-harness: harness error: {exc}", file=sys.stderr)
        return EXIT_ERROR
