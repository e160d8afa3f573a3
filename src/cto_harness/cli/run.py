"""`cto-harness run` (one Stage 2 run) and `cto-harness cases` (the fixture cases)."""

from __future__ import annotations

import argparse
import sys

from cto_harness.cli.parser import (
    Subparsers,
    add_challenge,
    add_command,
    add_harness_root,
    add_json,
    harness_root,
    print_json,
    text_table,
)
from cto_harness.cli.settings_flags import add_setting_flags


def add_engine(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    parser.add_argument(
        "--engine", metavar="NAME[,NAME...]" if several else "NAME",
        help="the engine: fake (default, offline, deterministic), case (WorkOS Case), pi, or one "
             "an installed package registers"
             + ("; several, comma-separated, run one suite each under the suite folder and "
                "compare pass@k side by side (engines.json)" if several else ""))


def add_parser(subparsers: Subparsers) -> None:
    run = add_command(subparsers, "run", "one Stage 2 run of a fixture case; writes a bundle",
                      "Copy a fixture case into a fresh workspace, run the engine on it, verify "
                      "the result with the case's own tests and write a signed evidence bundle. "
                      "While the provider runs, its current phase and last tool call are shown "
                      "on stderr (one updating line on a terminal, a heartbeat line every 30 s "
                      "otherwise). Exit 0 pass, 1 fail, 2 blocked, 3 harness error, 64 usage "
                      "error.", handler=_run)
    run.add_argument("case_id", metavar="CASE",
                     help="a case under harness/evals/cases ([a-z0-9][a-z0-9-]*)")
    add_engine(run)
    add_json(run, "print report.json on stdout")
    add_challenge(run)
    add_harness_root(run)
    add_setting_flags(run)

    cases = add_command(subparsers, "cases", "list the fixture cases (id, title, tags)",
                        handler=_cases)
    add_json(cases, "a JSON list on stdout: id, title, tags, summary, allowed_paths, "
                    "framework, min_tests, folder (valid: false and error for a case that does "
                    "not load)")
    add_harness_root(cases)


def _run(args: argparse.Namespace) -> int:
    from cto_harness.sandbox.probe import start_probe

    start_probe()  # what the machine can isolate with, found while the run's modules load
    from cto_harness.cli.settings_flags import resolve
    from cto_harness.core.fixtures import case_directory
    from cto_harness.core.run import execute_run
    from cto_harness.engines import DEFAULT_ENGINE, get_engine
    from cto_harness.evidence.summary import one_line_reason
    from cto_harness.inert import for_terminal, inert
    from cto_harness.progress import RunProgress

    # A bad case id, engine, flag or setting is one usage line, before anything else.
    root = harness_root(args)
    case_directory(root, args.case_id)
    engine = get_engine(args.engine or DEFAULT_ENGINE)
    resolved = resolve(args, [engine.name])
    print(f"cto-harness: running {args.case_id} with the {engine.name} engine…", file=sys.stderr)
    with RunProgress(sys.stderr, f"{args.case_id} [{engine.name}]") as progress:
        result = execute_run(args.case_id, engine.name, harness_root=root,
                             settings=resolved.settings, environ=resolved.environ,
                             challenge=args.challenge, observer=progress)
    report = result.report
    if args.json:
        sys.stdout.write((result.run_dir / "report.json").read_text(encoding="utf-8"))
    # Blocker messages name provider files and output: shown inert (no escape sequence acts).
    lines = [f"cto-harness: {report.case_id} [{report.engine}] verdict "
             f"{report.verdict.upper()} in {report.timing.duration_ms} ms",
             f"  why: {inert(one_line_reason(report.model_dump(mode='json')))}"]
    lines += [f"  blocker {inert(b.code)}: {inert(b.message)}" for b in report.blockers[1:]]
    if failed := [name for name, held in report.pass_conditions.items() if not held]:
        lines.append(f"  failed conditions: {', '.join(failed)}")
    lines += [f"  bundle: {result.run_dir}", f"  readable report: {result.run_dir / 'report.md'}"]
    print("\n".join(for_terminal(lines, sys.stderr)), file=sys.stderr)
    return result.exit_code


def _cases(args: argparse.Namespace) -> int:
    from cto_harness.core.fixtures import case_summary, list_case_ids
    from cto_harness.inert import inert

    root = harness_root(args)
    cases = [case_summary(root, case_id) for case_id in list_case_ids(root)]
    if args.json:
        print_json(cases)
        return 0
    rows = [("ID", "TITLE", "TAGS")]
    rows += [(str(c["id"]), inert(str(c.get("title") or f"(does not load: {c.get('error')})")),
              ",".join(str(t) for t in c.get("tags") or [])) for c in cases]  # type: ignore[attr-defined]
    print(text_table(rows))
    return 0
