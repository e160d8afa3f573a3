"""The evidence bundle (DESIGN section 7): layout, redaction, report.md, manifest and freshness.

Order matters: every artifact first, then report.json (which lists their digests), then
artifacts.sha256 (which covers report.json too), then freshness.json (which holds the manifest's
digest), then the signature. Each file is written atomically.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

from pydantic import ValidationError

from cto_harness.contracts import Report
from cto_harness.evidence.layout import WORK_DIRS, bundle_files, is_temporary_name
from cto_harness.evidence.markdown import endpoint_banner, outcome_lines, pull_request_lines
from cto_harness.evidence.redaction import Redactor
from cto_harness.evidence.summary import failing_tests, one_line_reason, task_text
from cto_harness.fsutil import (
    atomic_write_bytes,
    atomic_write_text,
    sha256_bytes,
    sha256_files,
)
from cto_harness.inert import code_fence, code_span, markdown, path_text
from cto_harness.tree import DIR, FILE, PATH_MAX, TreeChanged, remove_at, walk

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
# Written in place of the task when the run stopped before the provider was given one.
NOT_GIVEN = "task/NOT-GIVEN.txt"
REDACTED = b"[REDACTED]"


# Room left under PATH_MAX for the harness's own temporary names beside a bundle file, and the
# deepest a bundle folder ever nests (baseline/backend/case-inputs/...: far fewer).
_PATH_ROOM = 512
_MAX_DEPTH = 16


def clean_bundle(root: Path) -> list[str]:
    """Remove from a bundle folder (and its nested baseline) every entry no bundle may hold: a
    link, a FIFO, socket or device, a path too long to be opened by name, nested deeper than
    any bundle nests, or named like an atomic write's temporary file (`verify` refuses one).
    Only a provider on the weakest tier can put one there (the run is then blocked
    `bundle_tampered`), or an interrupted write; removing it keeps sealing and `verify` from
    following, blocking on or choking over it. Returns what was removed (shown escaped)."""
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
                    or node.rel.count(b"/") >= _MAX_DEPTH
                    or is_temporary_name(os.fsdecode(node.name))):
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
    """Replace every secret value, and every long piece of one, in the given files; returns the
    files that held one."""
    hits: list[str] = []
    redactor = Redactor(secrets)
    if not redactor:
        return hits
    for path in paths:
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        cleaned = redactor.bytes(data)
        if cleaned != data:
            atomic_write_bytes(path, cleaned)
            hits.append(path.name)
    return hits


def redact_report(report: Report, secrets: Sequence[str]) -> Report:
    """The report with every secret (and long piece of one) out of each of its strings: before
    report.md escapes or cuts them, which would hide a secret from a redaction of the file."""
    redactor = Redactor(secrets)
    if not redactor:
        return report
    try:
        return Report.model_validate(redactor.value(report.model_dump(mode="json")))
    except ValidationError:
        # A value that broke a field of the harness's own (a secret equal to a verdict word):
        # report.md and report.json are still redacted as files.
        return report


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
    text = Redactor(secrets).text(report.model_dump_json(indent=2) + "\n")
    atomic_write_text(root / "report.json", text)
    manifest_digest = write_manifest(root)
    freshness = report.freshness.model_copy(update={"artifacts_manifest_sha256": manifest_digest})
    atomic_write_text(root / "freshness.json", freshness.model_dump_json(indent=2) + "\n")
    return report



# What report.md links to, with a word on each; files written after it (report.json and the
# seal) are always there when the bundle is whole.
_ARTIFACT_NOTES = {
    "report.json": "every fact of this page, for tools",
    "patch.diff": "what the provider changed, as a git diff",
    "test.log": "the harness's own test run",
    "events.normalized.jsonl": "the harness's and the provider's events",
    "trace.jsonl": "phases and tool calls as spans (OpenTelemetry's shape)",
    "backend/stdout.log": "the provider's standard output",
    "backend/stderr.log": "the provider's standard error",
    "artifacts.sha256": "the digest of every file (`sha256sum -c artifacts.sha256`)",
    "freshness.json": "run id, nonce, times and the digests that prove this run is this one",
    "evidence.dsse.json": "the signature over the manifest and the freshness record",
}
_SEALED_AFTER = ("report.json", "artifacts.sha256", "freshness.json", "evidence.dsse.json")
_LINKABLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
_MAX_LINKS = 60


def _link(rel: str) -> str:
    """A relative link to a bundle file; a name that is not plainly safe is shown, not linked."""
    return f"[{rel}]({rel})" if _LINKABLE.match(rel) and ".." not in rel else markdown(rel)


def _relative(text: str, run_dir: str) -> str:
    """Paths inside the run folder shown relative to it (the folder itself as `.`)."""
    if not run_dir or run_dir == "/":
        return text
    return text.replace(run_dir + "/", "").replace(run_dir, ".")


def _bundle_listing(root: Path) -> list[str]:
    """The bundle's files as they are when report.md is written, and those written after it."""
    try:
        present = bundle_files(root) if root.is_dir() else []
    except OSError:
        present = []
    return sorted({*present, *_SEALED_AFTER} if present else set())


def _artifact_order(rel: str) -> tuple[int, str]:
    notes = list(_ARTIFACT_NOTES)
    return (notes.index(rel) if rel in notes else len(notes), rel)


def _artifact_lines(files: list[str]) -> list[str]:
    if not files:
        return ["- the bundle's files could not be listed when this page was written"]
    listed = [f for f in files if not f.startswith("baseline/")]
    lines = [f"- {_link(rel)}" + (f": {_ARTIFACT_NOTES[rel]}" if rel in _ARTIFACT_NOTES else "")
             for rel in sorted(listed, key=_artifact_order)[:_MAX_LINKS]]
    if len(listed) > _MAX_LINKS:
        lines.append(f"- … and {len(listed) - _MAX_LINKS} more (artifacts.sha256 lists them all)")
    if "baseline/report.md" in files:
        lines.append(f"- {_link('baseline/report.md')}: the same-run fake baseline's own report")
    return lines


def _sandbox_line(report: Report) -> str:
    iso = report.isolation
    uid = f"uid {iso.uid}" if iso.uid is not None else "uid not set"
    line = f"- sandbox: {uid}, network `{iso.network}`"
    if iso.endpoint:
        line += (f" (only {iso.endpoint.get('host')}:{iso.endpoint.get('port')}, "
                 f"{iso.connections} connections in `backend/network.jsonl`)")
    return line


def render_markdown(report: Report) -> str:
    """report.md: the verdict and why first, then the task, the change in numbers, the failing
    tests, and links to every other artifact (relative, so the bundle can move), with paths
    inside the run folder shown relative to it. Every value that is not the harness's own
    literal text goes through `inert.markdown` (or a fence it cannot close): a file name, a
    claim or a message can never become a heading, a comment, a link or a table cell."""
    m = markdown
    root = Path(report.run_dir)
    rel = partial(_relative, run_dir=report.run_dir)
    data = report.model_dump(mode="json")
    files = _bundle_listing(root)
    lines = [
        f"# cto-harness run {m(report.case_id)} — **{m(report.verdict.upper())}**",
        "",
        f"**Why:** {m(rel(one_line_reason(data)))}",
        "",
        *endpoint_banner(report),
        *outcome_lines(report),
    ]
    if report.isolation.warnings:
        # Weaker than promised (e.g. `network: shared`): never silent, so near the top.
        lines += ["## Isolation warnings", ""]
        lines += [f"- **{m(rel(w))}**" for w in report.isolation.warnings]
        lines.append("")
    task, task_files = task_text(root)
    lines += ["## Task", ""]
    if task_files in ([], [NOT_GIVEN]):
        lines.append("None was given to the provider: the run stopped before launch"
                     + (f" ({_link(NOT_GIVEN)})." if task_files else "."))
    else:
        lines += [code_fence(task), "",
                  "Given to the provider: " + ", ".join(_link(f) for f in task_files) + "."]
    d = report.diff_stats
    binary = f", {d.binary_files} binary" if d.binary_files else ""
    lines += ["", "## Changes", "",
              f"{d.files} file{'s' if d.files != 1 else ''} changed, +{d.additions} "
              f"-{d.deletions} lines{binary} ({_link('patch.diff')}).", ""]
    if report.changed_files:
        lines += ["| path | change | kind | allowed | notes |", "|---|---|---|---|---|"]
        lines += [
            f"| {m(c.path[:500])} | {m(c.change)} | {m(c.kind)} | "
            f"{'yes' if c.allowed else '**no**'} | {m('; '.join(c.notes))} |"
            for c in report.changed_files
        ]
    else:
        lines.append("No source file changed.")
    if report.bookkeeping_changes:
        folders = sorted({c.path.split("/", 1)[0] for c in report.bookkeeping_changes})
        lines += ["", f"Provider bookkeeping ({', '.join(markdown(f + '/') for f in folders)}): "
                  f"{len(report.bookkeeping_changes)} files."]
    v = report.verification
    failing = failing_tests(data)
    lines += [
        "",
        "## Verification (run by the harness)",
        "",
        f"- status: **{m(v.status)}**" + (f" — {m(rel(v.reason))}" if v.reason else ""),
        f"- tests: {v.tests_ran} ran, {v.tests_passed} passed, {v.tests_failed} failed, "
        f"{v.tests_skipped} skipped, of {v.tests_expected} the pristine files define "
        f"(results from {m(v.result_channel or 'no channel')}; log: {_link('test.log')})",
    ]
    if failing:
        lines.append(f"- failing tests ({len(failing)}):")
        lines += [f"  - {m(t)}" for t in failing[:50]]
        if len(failing) > 50:
            lines.append(f"  - … and {len(failing) - 50} more (report.json)")
    lines += [
        f"- failed conditions: {m(', '.join(v.failures)) or 'none'}",
        f"- command: {m(' '.join(v.command))}" if v.command else "- command: not run",
        f"- verification files laid back: {len(v.restored_files)}",
    ]
    if v.log_counts is not None:
        lines.append(f"- test.log says (cross-check only, never the verdict): "
                     f"{v.log_counts.get('ran', 0)} ran, {v.log_counts.get('failed', 0)} failed")
    if report.blockers:
        lines += ["", "## Blockers", ""]
        lines += [f"- {m(b.code)}: {m(rel(b.message))}" for b in report.blockers]
    lines += ["", "## Pass conditions", ""]
    if report.pass_conditions:
        lines += [f"- [{'x' if ok else ' '}] {m(name)}"
                  for name, ok in report.pass_conditions.items()]
    else:
        lines.append("- not evaluated (the run did not reach a verdict on its merits)")
    lines += [
        "",
        "## Run",
        "",
        f"- run id: {m(report.run_id)} (nonce {m(report.nonce)})",
        f"- engine: {m(report.engine)}, stage {m(report.stage)}",
        f"- provider: {m(report.provider.name)} {m(report.provider.sha256 or 'n/a')} "
        f"({m(report.provider.provenance_level or 'no provenance')}), admission: "
        f"{m(report.source_admission_status)}",
        f"- started {m(report.timing.started_at)}, took {report.timing.duration_ms} ms",
        f"- isolation: {m(report.isolation.tier)}"
        + (f" ({m(rel(report.isolation.reason))})" if report.isolation.reason else ""),
        _sandbox_line(report),
    ]
    if report.forbidden_actions_attempted:
        lines += ["", "## Forbidden actions attempted", ""]
        lines += [f"- {m(f.action)}: {m(rel(f.detail))}"
                  for f in report.forbidden_actions_attempted]
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
                  code_fence(rel(json.dumps(report.provider_claims, indent=2)[:4000]))]
    if report.baseline is not None:
        b = report.baseline
        lines += ["", "## Same-run fake baseline", "",
                  f"- verdict: {m(b.verdict)}; evidence shape equal: {b.evidence_shape_equal}; "
                  f"outcome equal: {b.outcome_equal}",
                  f"- baseline changed: {m(', '.join(b.changed_files)) or 'none'}",
                  f"- provider changed: {m(', '.join(b.case_changed_files)) or 'none'}"]
    command = " ".join(rel(arg) for arg in report.command)
    lines += ["", "## Command", "", code_span(command) if command else "not launched", ""]
    if any(arg.startswith(report.run_dir + "/private/") for arg in report.command):
        lines += ["`private/` held the provider's hashed copy and its private homes; it is "
                  "removed when the run ends (the copy's SHA-256 is the provider's above). "
                  "`workspace/` is the copy the provider worked in, kept beside the bundle.", ""]
    lines += ["## Artifacts", "", "Paths are relative to this run's folder.", "",
              *_artifact_lines(files), "",
              "`cto-harness verify .` (in this folder) checks digests, run id, nonce, freshness "
              "and the signature.", ""]
    return "\n".join(lines)
