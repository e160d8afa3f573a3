"""`cto-harness runs list|show|clean`: the run history, read from the bundles themselves."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cto_harness.cli.parser import Subparsers
from cto_harness.errors import UsageError
from cto_harness.inert import inert

VERDICT_CHOICES = ("pass", "fail", "blocked", "error", "unverified")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "runs", help="list, show and clean past runs (every bundle re-verified when read)",
        description="Past runs, read from their bundles in the runs folder "
                    "($CTO_HARNESS_RUNS_DIR) and in the suites ($CTO_HARNESS_HOME/suites). "
                    "Each bundle is re-verified; one that does not verify is listed as "
                    "UNVERIFIED with the reason, and its verdict is never taken as proven.")
    sub = parser.add_subparsers(dest="runs_command", required=True, metavar="{list,show,clean}",
                                parser_class=type(parser))

    listing = sub.add_parser("list", help="past runs, newest first",
                             description="Past runs, newest first, with filters.")
    listing.add_argument("--case", metavar="GLOB", help="only cases matching this glob")
    listing.add_argument("--engine", help="only runs of this engine (fake, case)")
    listing.add_argument("--verdict", choices=VERDICT_CHOICES,
                         help="only runs with this verified verdict, or the unverified ones")
    listing.add_argument("--since", metavar="WHEN",
                         help="only runs started since: a duration back (7d, 12h, 30m) or a "
                              "date (2026-11-01)")
    listing.add_argument("--json", action="store_true", help="a JSON list on stdout")
    _public_key(listing)
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="one run: verdict, reason, verification, paths",
                          description="One run, by folder name or run id (a unique prefix "
                                      "of either is enough).")
    show.add_argument("id", metavar="ID", help="folder name or run id, or a unique prefix")
    show.add_argument("--json", action="store_true", help="the entry and its report on stdout")
    _public_key(show)
    show.set_defaults(func=cmd_show)

    clean = sub.add_parser(
        "clean", help="delete bundles older than a limit from the runs folder",
        description="Delete run bundles (with their workspaces) older than a limit from the "
                    "runs folder. Only folders proven to be bundles directly in it are deleted, "
                    "never through a link; suites are left alone. An unverified bundle's age "
                    "counts from its newest file, since its recorded times are not proven.")
    clean.add_argument("--older-than", required=True, metavar="AGE",
                       help="delete bundles older than this: 30m, 12h, 7d, 2w")
    clean.add_argument("--keep-failed", action="store_true",
                       help="keep every bundle whose verified verdict is not pass, and every "
                            "unverified bundle")
    clean.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    clean.add_argument("--json", action="store_true", help="the plan (and what was done) as JSON")
    _public_key(clean)
    clean.set_defaults(func=cmd_clean)
    return parser


def _public_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--public-key", metavar="FILE",
                        help="the signer's public key (default: this machine's harness key)")


def _key(args: argparse.Namespace) -> Path | None:
    return Path(args.public_key) if args.public_key else None


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "?"


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f}d" if hours >= 24 else f"{hours:.1f}h"


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    # Every cell is made inert: a case id or verdict from a tampered bundle cannot drive the
    # terminal (ANSI escapes) or fake a line (newlines).
    cells = [tuple(inert(c) for c in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False))
                     + "  " + r[-1] for r in cells)


def cmd_list(args: argparse.Namespace) -> int:
    from cto_harness.core.history import list_runs, parse_since
    from cto_harness.settings import Settings

    settings = Settings.from_env()
    since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    entries = list_runs(settings, case=args.case, engine=args.engine, verdict=args.verdict,
                        since=since, public_key=_key(args))
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
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
    print(_table(rows))
    unverified = [e for e in entries if not e.verified]
    for e in unverified:
        print(f"unverified {inert(e.name)}: {inert(e.problem or '?')}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from cto_harness.core.history import find_run
    from cto_harness.inert import read_json
    from cto_harness.settings import Settings

    entry = find_run(Settings.from_env(), args.id, _key(args))
    if args.json:
        print(json.dumps({"entry": entry.to_json(),
                          "report": read_json(entry.path / "report.json")}, indent=2))
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
    print("\n".join(inert(line) for line in lines))
    # Paths last and unmangled beyond inert: they are for copying.
    print(inert(f"  folder:   {entry.path}"))
    print(inert(f"  report:   {entry.path / 'report.md'}"))
    print(inert(f"  view:     cto-harness view {entry.path}"))
    return 0 if entry.verified else 1


def cmd_clean(args: argparse.Namespace) -> int:
    from cto_harness.core.history import delete_bundle, parse_duration, plan_clean
    from cto_harness.settings import Settings

    settings = Settings.from_env()
    limit = parse_duration(args.older_than)
    plan = plan_clean(settings, limit, keep_failed=args.keep_failed, public_key=_key(args))
    deleted, failed = [], []
    for item in plan:
        if item.delete and not args.dry_run:
            try:
                delete_bundle(settings, item.entry.path)
                deleted.append(item)
            except (OSError, UsageError) as exc:  # refused or failed: said, and the rest goes on
                failed.append((item, str(exc)))
    if args.json:
        print(json.dumps({
            "dry_run": args.dry_run,
            "runs_dir": str(settings.runs_dir),
            "plan": [{**i.entry.to_json(), "delete": i.delete, "why": i.why,
                      "age_seconds": int(i.age.total_seconds())} for i in plan],
            "deleted": [i.entry.name for i in deleted],
            "failed": [{"id": i.entry.name, "error": e} for i, e in failed],
        }, indent=2))
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
