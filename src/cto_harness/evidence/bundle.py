"""The evidence bundle (DESIGN section 7): layout, redaction, report.md, manifest and freshness.

Order matters: every artifact first, then report.json (which lists their digests), then
artifacts.sha256 (which covers report.json too), then freshness.json (which holds the manifest's
digest), then the signature. Each file is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cto_harness.contracts import Report
from cto_harness.evidence.markdown import endpoint_banner, outcome_lines, pull_request_lines
from cto_harness.fsutil import (
    atomic_write_bytes,
    atomic_write_text,
    sha256_bytes,
    sha256_files,
)
from cto_harness.inert import code_fence, markdown, path_text
from cto_harness.tree import DIR, FILE, PATH_MAX, TreeChanged, remove_at, walk

# Working folders of a run: present in the run directory, never part of the evidence.
WORK_DIRS = frozenset({"workspace", "private"})
# Files that cannot list their own digest.
NOT_IN_REPORT = frozenset(
    {"report.json", "artifacts.sha256", "freshness.json", "evidence.dsse.json"}
)
NOT_IN_MANIFEST = frozenset({"artifacts.sha256", "freshness.json", "evidence.dsse.json"})
REQUIRED_FILES = (
    "report.json",
    "report.md",
    "events.normalized.jsonl",
    "trace.jsonl",
    "patch.diff",
    "test.log",
    "backend/stdout.log",
    "backend/stderr.log",
    "artifacts.sha256",
    "freshness.json",
)
MANIFEST = "artifacts.sha256"
REDACTED = b"[REDACTED]"


def bundle_files(root: Path) -> list[str]:
    """Every file of the bundle rooted at `root` (and of a nested baseline bundle), sorted."""
    found: list[str] = []
    # (folder, its path in the bundle, whether it is a bundle root): a stack, not recursion.
    stack: list[tuple[Path, str, bool]] = [(root, "", True)]
    while stack:
        folder, rel_prefix, bundle_root = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if bundle_root and entry.name in WORK_DIRS:
                    continue
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    continue
                rel = f"{rel_prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    # A nested baseline is a bundle of its own, with its own working folders.
                    stack.append((Path(entry.path), rel + "/",
                                  bundle_root and entry.name == "baseline"))
                else:
                    found.append(rel)
    return sorted(found)


# Room left under PATH_MAX for the harness's own temporary names beside a bundle file, and the
# deepest a bundle folder ever nests (baseline/backend/case-inputs/...: far fewer).
_PATH_ROOM = 512
_MAX_DEPTH = 16


def clean_bundle(root: Path) -> list[str]:
    """Remove from a bundle folder (and its nested baseline) every entry no bundle may hold: a
    link, a FIFO, socket or device, a path too long to be opened by name, or nested deeper than
    any bundle nests. Only a provider on
    the weakest tier can put one there (the run is then blocked `bundle_tampered`); removing it
    keeps sealing and `verify` from following, blocking on or choking over it. Returns what was
    removed (shown escaped)."""
    base = len(os.fsencode(root.absolute())) + 1

    def working_folder(rel: bytes) -> bool:
        parts = rel.split(b"/")
        return ((len(parts) == 1 and parts[0].decode(errors="replace") in WORK_DIRS)
                or (len(parts) == 2 and parts[0] == b"baseline"
                    and parts[1].decode(errors="replace") in WORK_DIRS))

    doomed: list[bytes] = []
    failure = ""
    try:
        for node, _fd in walk(root, prune=working_folder):
            if any(node.rel.startswith(d + b"/") for d in doomed):
                continue
            if (node.kind not in (FILE, DIR) or base + len(node.rel) > PATH_MAX - _PATH_ROOM
                    or node.rel.count(b"/") >= _MAX_DEPTH):
                doomed.append(node.rel)
    except (OSError, TreeChanged) as exc:  # something still moves it: remove what was found
        failure = str(exc)
    removed = []
    for rel in doomed:
        try:
            remove_at(root, rel)
            removed.append(path_text(rel))
        except (OSError, TreeChanged) as exc:
            removed.append(f"{path_text(rel)} (could not remove: {exc})")
    if failure:
        removed.append(f"(the bundle folder could not be walked whole: {failure})")
    return removed


def redact_files(paths: Iterable[Path], secrets: list[str]) -> list[str]:
    """Replace every secret value in the given files; returns the files that held one."""
    hits: list[str] = []
    encoded = [s.encode() for s in secrets if s]
    if not encoded:
        return hits
    for path in paths:
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        cleaned = data
        for secret in encoded:
            cleaned = cleaned.replace(secret, REDACTED)
        if cleaned != data:
            atomic_write_bytes(path, cleaned)
            hits.append(path.name)
    return hits


def artifact_digests(root: Path, *, exclude: frozenset[str]) -> dict[str, str]:
    rels = [rel for rel in bundle_files(root) if rel not in exclude]
    return dict(zip(rels, sha256_files([root / rel for rel in rels]), strict=True))


def write_manifest(root: Path) -> str:
    """Write artifacts.sha256 (sha256sum -c compatible); returns its own digest."""
    digests = artifact_digests(root, exclude=NOT_IN_MANIFEST)
    text = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(digests.items()))
    atomic_write_text(root / MANIFEST, text)
    return sha256_bytes(text.encode())


def write_report_and_seal(root: Path, report: Report, *, secrets: Sequence[str] = ()) -> Report:
    """report.json with the artifacts' digests, then the manifest, then freshness.json."""
    report.artifacts = artifact_digests(root, exclude=NOT_IN_REPORT)
    text = report.model_dump_json(indent=2) + "\n"
    for secret in secrets:
        text = text.replace(secret, REDACTED.decode())
    atomic_write_text(root / "report.json", text)
    manifest_digest = write_manifest(root)
    freshness = report.freshness.model_copy(update={"artifacts_manifest_sha256": manifest_digest})
    atomic_write_text(root / "freshness.json", freshness.model_dump_json(indent=2) + "\n")
    return report



def render_markdown(report: Report) -> str:
    """report.md: the same facts as report.json, for a person. Every value that is not the
    harness's own literal text goes through `inert.markdown` (or a fence it cannot close): a
    file name, a claim or a message can never become a heading, a comment or a table cell."""
    m = markdown
    lines = [
        f"# cto-harness run {m(report.case_id)} — **{m(report.verdict.upper())}**",
        "",
        *endpoint_banner(report),
        *outcome_lines(report),
        f"- run id: {m(report.run_id)} (nonce {m(report.nonce)})",
        f"- engine: {m(report.engine)}, stage {m(report.stage)}",
        f"- provider: {m(report.provider.name)} {m(report.provider.sha256 or 'n/a')} "
        f"({m(report.provider.provenance_level or 'no provenance')}), admission: "
        f"{m(report.source_admission_status)}",
        f"- started {m(report.timing.started_at)}, took {report.timing.duration_ms} ms",
        f"- isolation: {m(report.isolation.tier)}"
        + (f" ({m(report.isolation.reason)})" if report.isolation.reason else ""),
        "",
    ]
    if report.blockers:
        lines += ["## Blockers", ""]
        lines += [f"- {m(b.code)}: {m(b.message)}" for b in report.blockers]
        lines.append("")
    lines += ["## Pass conditions", ""]
    if report.pass_conditions:
        lines += [f"- [{'x' if ok else ' '}] {m(name)}"
                  for name, ok in report.pass_conditions.items()]
    else:
        lines.append("- not evaluated (the run did not reach a verdict on its merits)")
    lines += ["", "## Changed files", ""]
    if report.changed_files:
        lines += ["| path | change | kind | allowed | notes |", "|---|---|---|---|---|"]
        lines += [
            f"| {m(c.path[:500])} | {m(c.change)} | {m(c.kind)} | "
            f"{'yes' if c.allowed else '**no**'} | {m('; '.join(c.notes))} |"
            for c in report.changed_files
        ]
    else:
        lines.append("none")
    if report.bookkeeping_changes:
        folders = sorted({c.path.split("/", 1)[0] for c in report.bookkeeping_changes})
        lines += ["", f"Provider bookkeeping ({', '.join(markdown(f + '/') for f in folders)}): "
                  f"{len(report.bookkeeping_changes)} files."]
    v = report.verification
    lines += [
        "",
        "## Verification (run by the harness)",
        "",
        f"- status: **{m(v.status)}**" + (f" — {m(v.reason)}" if v.reason else ""),
        f"- command: {m(' '.join(v.command))}" if v.command else "- command: not run",
        f"- tests: {v.tests_ran} ran, {v.tests_passed} passed, {v.tests_failed} failed, "
        f"{v.tests_skipped} skipped, of {v.tests_expected} the pristine files define "
        f"(results from {m(v.result_channel or 'no channel')})",
        f"- failed conditions: {m(', '.join(v.failures)) or 'none'}",
        f"- verification files laid back: {len(v.restored_files)}",
    ]
    if v.log_counts is not None:
        lines.append(f"- test.log says (cross-check only, never the verdict): "
                     f"{v.log_counts.get('ran', 0)} ran, {v.log_counts.get('failed', 0)} failed")
    if report.forbidden_actions_attempted:
        lines += ["", "## Forbidden actions attempted", ""]
        lines += [f"- {m(f.action)}: {m(f.detail)}" for f in report.forbidden_actions_attempted]
    if report.process.leftover_processes:
        lines += ["", "## Processes left running by the provider (killed)", ""]
        lines += [f"- pid {m(p.get('pid'))}: {m(str(p.get('cmdline', ''))[:120])}"
                  for p in report.process.leftover_processes]
    lines += ["", *pull_request_lines(report)] if report.pull_requests else []
    if report.bundle_entries_removed:
        lines += ["", "## Entries removed from the bundle folder before sealing", ""]
        lines += [f"- {m(p[:300])}" for p in report.bundle_entries_removed[:50]]
    if report.provider_claims:
        lines += ["", "## Provider claims (recorded, not trusted)", "",
                  code_fence(json.dumps(report.provider_claims, indent=2)[:4000])]
    if report.baseline is not None:
        b = report.baseline
        lines += ["", "## Same-run fake baseline", "",
                  f"- verdict: {m(b.verdict)}; evidence shape equal: {b.evidence_shape_equal}; "
                  f"outcome equal: {b.outcome_equal}",
                  f"- baseline changed: {m(', '.join(b.changed_files)) or 'none'}",
                  f"- provider changed: {m(', '.join(b.case_changed_files)) or 'none'}"]
    lines += ["", "## Command", "", m(" ".join(report.command)) or "not launched", "",
              "Every artifact's SHA-256 is in artifacts.sha256 "
              "(`sha256sum -c artifacts.sha256`);",
              "`cto-harness verify <run-dir>` checks digests, run id, nonce and freshness.", ""]
    return "\n".join(lines)
