"""Run history: the bundles in the runs folder and in the suites, listed, shown and cleaned.

Every bundle is re-verified when it is read (`verify_bundle`); one that does not verify is still
listed, marked unverified with the reason, and its verdict is never counted as proven. Cleaning
deletes only folders proven to be bundles directly inside the runs folder: real directories (not
links) holding the bundle's own files, moved aside in one rename and then removed without
following any link.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from cto_harness.clock import parse_iso
from cto_harness.errors import UsageError
from cto_harness.evidence.bundlecheck import check_bundle
from cto_harness.evidence.summary import one_line_reason, verdict_of
from cto_harness.evidence.verify import TEXT_CAP
from cto_harness.inert import read_json
from cto_harness.settings import Settings
from cto_harness.tree import remove_tree

BUNDLE_MARKERS = ("report.json", "artifacts.sha256", "freshness.json")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w` (a usage error otherwise)."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise UsageError(f"not a duration: {text!r} (use a number and s, m, h, d or w: 7d)")
    try:
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:  # past timedelta's range (about 2.7 million years)
        raise UsageError(f"duration too long: {text!r}") from None


def parse_since(text: str, now: datetime) -> datetime:
    """A duration back from now (`7d`) or a date/time (`2026-11-01`, ISO 8601, UTC if bare)."""
    try:
        return now - parse_duration(text)
    except OverflowError:  # a valid duration reaching back before the year 1
        raise UsageError(f"--since reaches back before the year 1: {text!r}") from None
    except UsageError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since takes a duration (7d) or a date (2026-11-01), got {text!r}") \
            from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunEntry:
    path: Path
    location: str  # "runs" or "suite <folder name>"
    run_id: str
    case_id: str
    engine: str
    verdict: str  # as the report states it; proven only when `verified`
    reason: str
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    verified: bool
    problem: str | None  # why it did not verify

    @property
    def name(self) -> str:
        """The run's id in the history: its folder name in the runs folder, or
        `<suite>/<case>/<repeat>` for a suite's run (whose folder names repeat)."""
        return _ident(self.path, self.location)

    @property
    def shown_verdict(self) -> str:
        return self.verdict if self.verified else "unverified"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.name, "path": str(self.path), "location": self.location,
            "run_id": self.run_id, "case_id": self.case_id, "engine": self.engine,
            "verdict": self.verdict, "verified": self.verified, "problem": self.problem,
            "reason": self.reason,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "duration_ms": self.duration_ms,
        }


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_real_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def looks_like_bundle(path: Path) -> bool:
    """A real directory whose bundle files are real files (no link anywhere on the way)."""
    return _is_real_dir(path) and all(_is_real_file(path / name) for name in BUNDLE_MARKERS)


def _children(folder: Path) -> Iterator[Path]:
    if not _is_real_dir(folder):
        return
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                yield Path(entry.path)


def discover(settings: Settings) -> Iterator[tuple[Path, str]]:
    """(bundle folder, location): each bundle directly in the runs folder, then each run of
    each suite under `$CTO_HARNESS_HOME/suites/<suite>/runs/<case>/<repeat>`."""
    for path in _children(settings.runs_dir):
        if looks_like_bundle(path):
            yield path, "runs"
    for suite in _children(settings.home / "suites"):
        for case in _children(suite / "runs"):
            for path in _children(case):
                if looks_like_bundle(path):
                    yield path, f"suite {suite.name}"


def read_entry(path: Path, location: str, public_key: Path | None = None) -> RunEntry:
    check = check_bundle(path, public_key)
    raw = read_json(path / "report.json", limit=TEXT_CAP)
    report: dict[str, Any] = raw if isinstance(raw, dict) else {}
    raw_timing = report.get("timing")
    timing: dict[str, Any] = raw_timing if isinstance(raw_timing, dict) else {}
    duration = timing.get("duration_ms")
    return RunEntry(
        path=path, location=location, run_id=str(report.get("run_id", "?")),
        case_id=str(report.get("case_id", "?")), engine=str(report.get("engine", "?")),
        verdict=verdict_of(report), reason=one_line_reason(report) if report else
        "report.json is missing or unreadable",
        started_at=parse_iso(timing.get("started_at")), finished_at=parse_iso(timing.get("finished_at")),
        duration_ms=duration if isinstance(duration, int) else None,
        verified=check.ok, problem=None if check.ok else check.summary,
    )


def list_runs(settings: Settings, *, case: str | None = None, engine: str | None = None,
              verdict: str | None = None, since: datetime | None = None,
              public_key: Path | None = None) -> list[RunEntry]:
    """Matching runs, newest first. `verdict` "unverified" selects the ones that failed
    verification; any other verdict matches verified runs only."""
    entries = []
    for path, location in discover(settings):
        entry = read_entry(path, location, public_key)
        if case and not fnmatchcase(entry.case_id, case):
            continue
        if engine and entry.engine != engine:
            continue
        if verdict and entry.shown_verdict != verdict:
            continue
        if since and (entry.started_at is None or entry.started_at < since):
            continue
        entries.append(entry)
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(entries, key=lambda e: e.started_at or oldest, reverse=True)


def find_run(settings: Settings, ident: str, public_key: Path | None = None) -> RunEntry:
    """A run by its history id (`runs list`), folder name or run id, or a unique prefix."""
    exact: list[tuple[Path, str]] = []
    prefixed: list[tuple[Path, str]] = []
    for path, location in discover(settings):
        names = {path.name, _ident(path, location)}
        raw = read_json(path / "report.json", limit=TEXT_CAP)
        if isinstance(raw, dict) and isinstance(raw.get("run_id"), str):
            names.add(raw["run_id"])
        if ident in names:
            exact.append((path, location))
        elif any(n.startswith(ident) for n in names):
            prefixed.append((path, location))
    found = exact or prefixed
    if not found:
        raise UsageError(f"no run matches {ident!r} (cto-harness runs list shows them)")
    if len(found) > 1:
        listed = ", ".join(_ident(p, loc) for p, loc in found[:5])
        raise UsageError(f"{ident!r} matches {len(found)} runs ({listed}): give more of it, "
                         "or the id `runs list` shows")
    return read_entry(*found[0], public_key)


def _ident(path: Path, location: str) -> str:
    return path.name if location == "runs" else "/".join(path.parts[-4:-3] + path.parts[-2:])


# ---------------------------------------------------------------------------------------------
# clean


@dataclass(frozen=True)
class CleanItem:
    entry: RunEntry
    delete: bool
    why: str
    age: timedelta


def _newest_mtime(path: Path) -> datetime:
    newest = os.lstat(path).st_mtime
    with os.scandir(path) as entries:
        for entry in entries:
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return datetime.fromtimestamp(newest, tz=UTC)


def plan_clean(settings: Settings, older_than: timedelta, *, keep_failed: bool,
               now: datetime | None = None, public_key: Path | None = None) -> list[CleanItem]:
    """What `runs clean` would do with each bundle of the runs folder (suites are left alone).

    A verified bundle's age runs from its signed finish time. An unverified one's finish time is
    not proven, so its age runs from whichever is newer, that claim or its files' last change:
    tampering can only make a bundle look younger, never older."""
    now = now or datetime.now(UTC)
    items = []
    for path, location in discover(settings):
        if location != "runs":
            continue
        entry = read_entry(path, location, public_key)
        moments = [m for m in (entry.finished_at,) if m is not None]
        if not entry.verified or not moments:
            moments.append(_newest_mtime(path))
        age = now - max(moments)
        if age < older_than:
            items.append(CleanItem(entry, False, "newer than the limit", age))
        elif keep_failed and not entry.verified:
            items.append(CleanItem(entry, False, "kept: unverified, its verdict is not proven",
                                   age))
        elif keep_failed and entry.verdict != "pass":
            items.append(CleanItem(entry, False, f"kept: verdict {entry.verdict}", age))
        else:
            items.append(CleanItem(entry, True, "older than the limit", age))
    return items


def delete_bundle(settings: Settings, path: Path) -> None:
    """Remove one bundle folder of the runs folder, refusing anything not proven to be one."""
    runs_dir = settings.runs_dir.resolve()
    if path.parent.resolve() != runs_dir or path.name.startswith("."):
        raise UsageError(f"refusing to delete {path}: not a bundle directly in {runs_dir}")
    if not looks_like_bundle(path):
        raise UsageError(f"refusing to delete {path}: not a bundle (or a link)")
    aside = runs_dir / f".deleting-{path.name}-{secrets.token_hex(4)}"
    # One rename takes it out of the listing; a link swapped in since the check would be renamed
    # itself (rename never follows), and remove_tree never enters a link.
    os.rename(runs_dir / path.name, aside)
    if not _is_real_dir(aside):
        raise UsageError(f"refusing to delete {path}: it changed into a link while checked")
    # Iterative and by descriptors: the provider's workspace in the bundle may nest folders
    # past PATH_MAX and past Python's recursion limit (shutil.rmtree raised RecursionError).
    errors = remove_tree(aside, make_writable=True)
    if errors:
        raise OSError(f"{len(errors)} entries of {aside} could not be removed "
                      f"(first: {errors[0]})")
