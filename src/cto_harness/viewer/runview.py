"""One run's bundle, re-verified and read into what its page shows.

Verification comes first (`verify_bundle`: digests, signature, freshness, the nested baseline).
The content is read whatever the outcome, so that a tampered bundle can be inspected, but it is
then marked unverified everywhere it appears. Every string is made inert on the way in.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cto_harness.contracts import DiffStats
from cto_harness.evidence.bundlecheck import BundleCheck, check_bundle
from cto_harness.evidence.diffstat import diff_stats
from cto_harness.evidence.layout import bundle_files
from cto_harness.evidence.summary import (
    ProviderOutcomeView,
    explain_condition,
    failed_conditions,
    one_line_reason,
    provider_outcome,
    task_text,
    verdict_of,
)
from cto_harness.evidence.verify import TEXT_CAP
from cto_harness.inert import inert, read_ends, read_json, read_text
from cto_harness.viewer import testresults, timeline

DIFF_LIMIT = 2 << 20
LOG_LIMIT = 256 << 10
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Artifact:
    path: str
    digest: str | None  # as listed in artifacts.sha256
    size: int | None
    linkable: bool  # a regular file under the bundle, reached without a symlink
    listed: bool


@dataclass(frozen=True)
class RunView:
    root: Path
    verification: BundleCheck
    report: dict[str, Any]
    report_readable: bool
    run_id: str
    case_id: str
    engine: str
    verdict: str
    reason: str
    failed_conditions: list[tuple[str, str]]
    conditions: list[tuple[str, bool]]
    blockers: list[tuple[str, str]]
    outcome: ProviderOutcomeView | None
    task_text: str
    task_files: list[str]
    diff: str
    diff_cut: bool
    diff_stats: DiffStats
    tests: testresults.TestResults
    test_log: str
    test_log_cut: bool
    timeline: timeline.Timeline
    artifacts: list[Artifact]
    admission: dict[str, Any]
    has_baseline: bool
    # Local pull requests the run opened (their bodies keep their lines).
    pull_requests: list[dict[str, Any]]

    def section(self, key: str) -> dict[str, Any]:
        value = self.report.get(key)
        return value if isinstance(value, dict) else {}

    def items(self, key: str) -> list[Any]:
        value = self.report.get(key)
        return value if isinstance(value, list) else []

    @property
    def duration_ms(self) -> int | None:
        value = self.section("timing").get("duration_ms")
        return value if isinstance(value, int) else None

    @property
    def changed_paths(self) -> list[str]:
        return [str(c.get("path")) for c in self.items("changed_files") if isinstance(c, dict)]


_NAME_MAX = 255


def safe_path(root: Path, rel: str) -> Path | None:
    """`root/rel` when `rel` is relative, never climbs, and no part of it is a symlink (so the
    path stays under `root` by construction); None otherwise. Existence is not checked."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or "\0" in rel:
        return None
    if any(len(os.fsencode(part)) > _NAME_MAX for part in parts):  # no file is named so
        return None
    current = root
    for part in parts:
        current = current / part
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return None
        except FileNotFoundError:
            continue
        except OSError:  # a name past NAME_MAX, a folder it may not search: not a safe path
            return None
    return current


def _safe_file(root: Path, rel: str) -> Path | None:
    path = safe_path(root, rel)
    return path if path is not None and path.is_file() else None


def _artifacts(root: Path) -> list[Artifact]:
    listed: dict[str, str | None] = {}
    manifest = root / "artifacts.sha256"
    if manifest.is_file() and not manifest.is_symlink():
        text, _cut = read_text(manifest, limit=8 << 20)
        for line in text.splitlines():
            digest, sep, rel = line.partition("  ")
            if sep:
                listed[rel] = digest if _HEX64.match(digest) else None
    # The bundle's own files (the harness's walk: working folders skipped, no link followed).
    present = set(bundle_files(root)) if root.is_dir() else set()
    rows = []
    for rel in sorted(set(listed) | {inert(p) for p in present}):
        path = _safe_file(root, rel)
        rows.append(Artifact(
            path=rel, digest=listed.get(rel), size=path.stat().st_size if path else None,
            linkable=path is not None, listed=rel in listed,
        ))
    return rows


def _admission(report: dict[str, Any]) -> dict[str, Any]:
    """The provider's admission as the report states it, and this machine's registry record."""
    raw = report.get("provider")
    provider: dict[str, Any] = raw if isinstance(raw, dict) else {}
    info: dict[str, Any] = {"report": provider, "registry": None, "registry_note": ""}
    digest = provider.get("sha256")
    if provider.get("provenance_level") == "builtin" or not isinstance(digest, str):
        info["registry_note"] = "built into the harness: admitted by construction"
        return info
    try:
        from cto_harness.providers.registry import find_admission
        from cto_harness.settings import Settings

        record = find_admission(Settings.from_env(), digest)
    except Exception as exc:  # the registry is optional context, never a reason to fail a page
        info["registry_note"] = inert(f"this machine's admission registry could not be read: {exc}")
        return info
    if record is None:
        info["registry_note"] = "this digest is not in this machine's admission registry"
    else:
        info["registry"] = {k: inert(str(v)) for k, v in record.model_dump().items()}
        info["registry_note"] = "from this machine's admission registry (not part of the bundle)"
    return info


def load_run(root: Path, public_key: Path | None = None) -> RunView:
    root = root.absolute()
    verification = check_bundle(root, public_key)
    # As large as `verify` reads: a report it verified is never "missing" here.
    raw = read_json(root / "report.json", limit=TEXT_CAP)
    report: dict[str, Any] = raw if isinstance(raw, dict) else {}
    verdict = verdict_of(report)
    diff, diff_cut = read_text(root / "patch.diff", limit=DIFF_LIMIT)
    log, log_cut = read_ends(root / "test.log", limit=LOG_LIMIT)
    task, task_files = task_text(root)
    # Per-test details (tracebacks) keep their lines; everything else is one-line inert.
    with_lines = read_json(root / "report.json", limit=TEXT_CAP, multiline=True)
    verification_section = with_lines.get("verification") if isinstance(with_lines, dict) \
        else None
    pulls = with_lines.get("pull_requests") if isinstance(with_lines, dict) else None
    conditions = report.get("pass_conditions")
    blockers = report.get("blockers")
    tests = testresults.collect(
        verification_section if isinstance(verification_section, dict) else {}, log)
    reason = one_line_reason(report) if report else "report.json is missing or unreadable"
    return RunView(
        root=root,
        verification=verification,
        report=report,
        report_readable=bool(report),
        run_id=str(report.get("run_id", "?")),
        case_id=str(report.get("case_id", "?")),
        engine=str(report.get("engine", "?")),
        verdict=verdict,
        reason=reason,
        failed_conditions=[(n, explain_condition(n, report)) for n in failed_conditions(report)],
        conditions=[(str(k), v is True) for k, v in conditions.items()]
        if isinstance(conditions, dict) else [],
        blockers=[(str(b.get("code")), str(b.get("message"))) for b in blockers
                  if isinstance(b, dict)] if isinstance(blockers, list) else [],
        outcome=provider_outcome(report),
        task_text=task,
        task_files=task_files,
        diff=diff,
        diff_cut=diff_cut,
        diff_stats=diff_stats(diff),
        tests=tests,
        test_log=log,
        test_log_cut=log_cut,
        timeline=timeline.build(root),
        artifacts=_artifacts(root),
        admission=_admission(report),
        has_baseline=(root / "baseline").is_dir() and not (root / "baseline").is_symlink(),
        pull_requests=[p for p in pulls if isinstance(p, dict)] if isinstance(pulls, list) else [],
    )
