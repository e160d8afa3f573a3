"""`cto-harness runs list|show|clean`: the run history, read from the bundles themselves."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cto_harness.cli.parser import (
    Subparsers,
    add_command,
    add_json,
    add_public_key,
    add_subcommands,
    print_json,
    public_key,
    text_table,
)
from cto_harness.cli.settings_flags import add_setting_flags
from cto_harness.errors import UsageError
from cto_harness.inert import for_terminal, inert

if TYPE_CHECKING:
    from cto_harness.settings import Settings

VERDICT_CHOICES = ("pass", "fail", "blocked", "error", "unverified")
# The settings saying where runs are: the same flags as `run` and `suite` take.
WHERE_RUNS_ARE = ("home", "runs_dir")


def add_parser(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers, "runs", "list, show and clean past runs (every bundle re-verified when read)",
        "Past runs, read from their bundles in the runs folder ($CTO_HARNESS_RUNS_DIR) and in "
        "the suites ($CTO_HARNESS_HOME/suites). Each bundle is re-verified; one that does not "
        "verify is listed as UNVERIFIED with the reason, and its verdict is never taken as "
        "proven.")
    sub = add_subcommands(parser, "runs_command")

    listing = add_command(sub, "list", "past runs, newest first",
                          "Past runs, newest first, with filters.", handler=cmd_list)
    listing.add_argument("--case", metavar="GLOB", help="only cases matching this glob")
    listing.add_argument("--engine", help="only runs of this engine (fake, case, pi)")
    listing.add_argument("--verdict", choices=VERDICT_CHOICES,
                         help="only runs with this verified verdict, or the unverified ones")
    listing.add_argument("--since", metavar="WHEN",
                         help="only runs started since: a duration back (7d, 12h, 30m) or a "
                              "date (2026-11-01)")
    add_json(listing, "a JSON list on stdout")
    add_public_key(listing)
    add_setting_flags(listing, only=WHERE_RUNS_ARE)

    show = add_command(sub, "show", "one run: verdict, reason, verification, paths",
                       "One run, by folder name or run id (a unique prefix of either is "
                       "enough).", handler=cmd_show)
    show.add_argument("id", metavar="ID", help="folder name or run id, or a unique prefix")
    add_json(show, "the entry and its report on stdout")
    add_public_key(show)
    add_setting_flags(show, only=WHERE_RUNS_ARE)

    clean = add_command(
        sub, "clean", "delete bundles older than a limit from the runs folder",
        "Delete run bundles (with their workspaces) older than a limit from the runs folder. "
        "Only folders proven to be bundles directly in it are deleted, never through a link; "
        "suites are left alone. An unverified bundle's age counts from its newest file, since "
        "its recorded times are not proven.", handler=cmd_clean)
    clean.add_argument("--older-than", required=True, metavar="AGE",
                       help="delete bundles older than this: 30m, 12h, 7d, 2w")
    clean.add_argument("--keep-failed", action="store_true",
                       help="keep every bundle whose verified verdict is not pass, and every "
                            "unverified bundle")
    clean.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    add_json(clean, "the plan (and what was done) as JSON")
    add_public_key(clean)
    add_setting_flags(clean, only=WHERE_RUNS_ARE)


def _settings(args: argparse.Namespace) -> Settings:
    from cto_harness.cli.settings_flags import resolve

    return resolve(args, engines=[]).settings


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "?"


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f}d" if hours >= 24 else f"{hours:.1f}h"


def cmd_list(args: argparse.Namespace) -> int:
    from cto_harness.core.history import list_runs, parse_since

    settings = _settings(args)
    since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    entries = list_runs(settings, case=args.case, engine=args.engine, verdict=args.verdict,
                        since=since, public_key=public_key(args))
    if args.json:
        print_json([e.to_json() for e in entries])
        return 0
    if not entries:
        print(f"no runs (runs folder: {settings.runs_dir})", file=sys.stderr)
        return 0
    rows = [("ID", "CASE", "ENGINE", "VERDICT", "STARTED (UTC)", "DURATION", "WHERE")]
    for e in entries:
        verdict = e.verdict if e.verified else f"UNVERIFIED(says {e.verdict})"
        duration = f"{e.duration_ms} ms" if e.duration_ms is not None else "?"
        rows.append((e.name, e.case_id, e.engine, verdict, _when(e.started_at), duration,
                     e.location))
    print(text_table([tuple(inert(c) for c in row) for row in rows]))
    unverified = [e for e in entries if not e.verified]
    for e in unverified:
        print(f"unverified {inert(e.name)}: {inert(e.problem or '?')}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from cto_harness.core.history import find_run
    from cto_harness.inert import read_json

    entry = find_run(_settings(args), args.id, public_key(args))
    if args.json:
        print_json({"entry": entry.to_json(), "report": read_json(entry.path / "report.json")})
        return 0 if entry.verified else 1
    status = "verified" if entry.verified else f"UNVERIFIED: {entry.problem}"
    verdict = entry.verdict.upper() if entry.verified else \
        f"UNVERIFIED (the report claims {entry.verdict.upper()})"
    lines = [
        f"{entry.case_id} [{entry.engine}] {verdict}",
        f"  reason:   {entry.reason}",
        f"  bundle:   {status}",
        f"  run id:   {entry.run_id}",
        f"  started:  {_when(entry.started_at)} UTC, "
        f"{entry.duration_ms if entry.duration_ms is not None else '?'} ms",
        f"  where:    {entry.location}",
    ]
    print("\n".join(for_terminal([inert(line) for line in lines], sys.stdout)))
    # Paths last and unmangled beyond inert: they are for copying.
    print(inert(f"  folder:   {entry.path}"))
    print(inert(f"  report:   {entry.path / 'report.md'}"))
    print(inert(f"  view:     cto-harness view {entry.path}"))
    return 0 if entry.verified else 1


def cmd_clean(args: argparse.Namespace) -> int:
    from cto_harness.core.history import delete_bundle, parse_duration, plan_clean

    settings = _settings(args)
    limit = parse_duration(args.older_than)
    plan = plan_clean(settings, limit, keep_failed=args.keep_failed, public_key=public_key(args))
    deleted, failed = [], []
    for item in plan:
        if item.delete and not args.dry_run:
            try:
                delete_bundle(settings, item.entry.path)
                deleted.append(item)
            except (OSError, UsageError) as exc:  # refused or failed: said, and the rest goes on
                failed.append((item, str(exc)))
    if args.json:
        print_json({
            "dry_run": args.dry_run,
            "runs_dir": str(settings.runs_dir),
            "plan": [{**i.entry.to_json(), "delete": i.delete, "why": i.why,
                      "age_seconds": int(i.age.total_seconds())} for i in plan],
            "deleted": [i.entry.name for i in deleted],
            "failed": [{"id": i.entry.name, "error": e} for i, e in failed],
        })
    else:
        for item in plan:
            action = ("would delete" if args.dry_run else "deleted") if item.delete else "kept"
            if any(item is f for f, _ in failed):
                action = "FAILED to delete"
            verdict = item.entry.verdict if item.entry.verified else "unverified"
            print(inert(f"{action:<16} {item.entry.name}  {verdict}  age {_age(item.age)}  "
                        f"({item.why})"))
        count = sum(1 for i in plan if i.delete)
        verb = "would delete" if args.dry_run else "deleted"
        print(f"cto-harness runs clean: {verb} {count if args.dry_run else len(deleted)} of "
              f"{len(plan)} bundles in {settings.runs_dir}", file=sys.stderr)
    return 1 if failed else 0
