"""Route records (`docs/route/*.md`) and their validator (DESIGN section 9).

A record is Markdown with front matter between `---` lines (`key: value`, one per line) and work
items as level-3 headings `### CTO-WORK-NNN: title` followed by `- key: value` lines. A record may
claim no more than the evidence shows: a `done` work item must cite a bundle that
`cto-harness verify` accepts, whose report digest, verdict, engine and blocker match the claim
(and, when stated, the model endpoint's kind, the provider's own outcome, the admission status,
the provenance level and the pin); a bundle whose model endpoint has a kind must have that kind
stated (a scripted pass is never cited as if it were a live one); an `admission_status` must
agree with the admission registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from cto_harness.fsutil import sha256_file
from cto_harness.settings import Settings

REQUIRED_KEYS = (
    "title", "status", "lifecycle_classification", "owner", "created", "last_reviewed",
    "core_promotion_status", "route",
)
KNOWN_VALUES = {
    "status": {"draft", "active", "blocked", "retired"},
    "lifecycle_classification": {"experimental", "incubating", "stable", "deprecated"},
    "core_promotion_status": {"not-promoted"},
    "route": {"provider-build", "provider-admission", "stage2-run"},
    "admission_status": {"admitted", "not_admitted"},
}
OPTIONAL_KEYS = {"admission_status", "admission_sha256"}
WORK_ITEM_ID = re.compile(r"^CTO-WORK-\d{3}$")
WORK_STATUSES = {"open", "blocked", "done"}
WORK_KEYS = {"status", "engine", "expect_verdict", "expect_blocker", "evidence", "report_sha256",
             "public_key", "blocked_by", "summary", "expect_endpoint_kind",
             "expect_provider_outcome", "expect_admission", "expect_provenance", "expect_pin"}
_HEADING = re.compile(r"^###\s+(\S+?):\s*(.+)$")
_ITEM_LINE = re.compile(r"^-\s+([a-z][a-z0-9_]*):\s*(.*)$")


@dataclass
class Violation:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class WorkItem:
    id: str
    title: str
    line: int
    fields: dict[str, tuple[str, int]] = field(default_factory=dict)


@dataclass
class RouteRecord:
    path: Path
    front: dict[str, tuple[str, int]]
    items: list[WorkItem]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_record(path: Path, violations: list[Violation]) -> RouteRecord | None:
    rel = str(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != "---":
        violations.append(Violation(rel, 1, "no front matter: the file must start with '---'"))
        return None
    front: dict[str, tuple[str, int]] = {}
    end = None
    for number, line in enumerate(lines[1:], 2):
        if line.strip() == "---":
            end = number
            break
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", key.strip()):
            violations.append(Violation(rel, number, f"front matter line is not 'key: value': {line!r}"))
            continue
        if key.strip() in front:
            violations.append(Violation(rel, number, f"duplicate front matter key {key.strip()!r}"))
        front[key.strip()] = (_unquote(value), number)
    if end is None:
        violations.append(Violation(rel, 1, "front matter is not closed by '---'"))
        return None
    items: list[WorkItem] = []
    current: WorkItem | None = None
    for number, line in enumerate(lines[end:], end + 1):
        if heading := _HEADING.match(line):
            current = WorkItem(heading.group(1), heading.group(2), number)
            items.append(current)
        elif line.startswith("#"):
            current = None
        elif current is not None and (item := _ITEM_LINE.match(line.strip())):
            current.fields[item.group(1)] = (_unquote(item.group(2)), number)
    return RouteRecord(path=path, front=front, items=items)


def _check_front(record: RouteRecord, rel: str, today: date, out: list[Violation]) -> None:
    front = record.front
    for key in REQUIRED_KEYS:
        if key not in front or not front[key][0]:
            out.append(Violation(rel, 1, f"front matter lacks {key!r}"))
    for key, (value, line) in front.items():
        if key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
            out.append(Violation(rel, line, f"unknown front matter key {key!r}"))
        if key in KNOWN_VALUES and value not in KNOWN_VALUES[key]:
            allowed = ", ".join(sorted(KNOWN_VALUES[key]))
            out.append(Violation(rel, line, f"{key} {value!r} is not one of: {allowed}"))
    dates: dict[str, date] = {}
    for key in ("created", "last_reviewed"):
        if key in front:
            value, line = front[key]
            try:
                dates[key] = date.fromisoformat(value)
            except ValueError:
                out.append(Violation(rel, line, f"{key} {value!r} is not a date (YYYY-MM-DD)"))
                continue
            if dates[key] > today:
                out.append(Violation(rel, line, f"{key} {value} is in the future"))
    if len(dates) == 2 and dates["last_reviewed"] < dates["created"]:
        out.append(Violation(rel, front["last_reviewed"][1], "last_reviewed is before created"))


def _check_item(item: WorkItem, record: RouteRecord, rel: str, out: list[Violation]) -> None:
    from cto_harness.errors import BundleInvalid
    from cto_harness.evidence.verify import verify_bundle

    if not WORK_ITEM_ID.match(item.id):
        out.append(Violation(rel, item.line, f"work item id {item.id!r} is not CTO-WORK-NNN"))
    for key, (_, line) in item.fields.items():
        if key not in WORK_KEYS:
            out.append(Violation(rel, line, f"{item.id}: unknown work item key {key!r}"))
    status, status_line = item.fields.get("status", ("", item.line))
    if status not in WORK_STATUSES:
        out.append(Violation(rel, status_line, f"{item.id}: status {status!r} is not one of "
                             f"{', '.join(sorted(WORK_STATUSES))}"))
    if status == "blocked" and not item.fields.get("blocked_by", ("",))[0]:
        out.append(Violation(rel, status_line, f"{item.id}: blocked without 'blocked_by'"))
    if status != "done":
        return
    # A done item is a claim: it must be backed by a bundle that verifies and says the same.
    evidence, evidence_line = item.fields.get("evidence", ("", status_line))
    digest, digest_line = item.fields.get("report_sha256", ("", status_line))
    if not evidence or evidence in ("none", "(none)"):
        out.append(Violation(rel, status_line, f"{item.id}: marked done but cites no run bundle"))
        return
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        out.append(Violation(rel, digest_line, f"{item.id}: done needs report_sha256 of the bundle"))
        return
    bundle = (record.path.parent / evidence).resolve()
    try:
        public_key = item.fields.get("public_key", ("", 0))[0]
        report = verify_bundle(bundle, record.path.parent / public_key if public_key else None)
    except (BundleInvalid, OSError) as exc:
        out.append(Violation(rel, evidence_line, f"{item.id}: the cited bundle does not verify: {exc}"))
        return
    if sha256_file(bundle / "report.json") != digest:
        out.append(Violation(rel, digest_line, f"{item.id}: report_sha256 is not the bundle's report"))
    expected = {
        "engine": (report.engine, item.fields.get("engine")),
        "expect_verdict": (report.verdict, item.fields.get("expect_verdict")),
    }
    for key, (actual, claimed) in expected.items():
        if claimed is None:
            out.append(Violation(rel, status_line, f"{item.id}: done needs '{key}' to state the claim"))
        elif claimed[0] != actual:
            out.append(Violation(rel, claimed[1], f"{item.id}: claims {key} {claimed[0]!r}, "
                                 f"the bundle says {actual!r}"))
    stated: dict[str, str | None] = {
        "expect_endpoint_kind": report.model.endpoint_kind,
        "expect_provider_outcome": report.provider_outcome.outcome,
        "expect_admission": report.source_admission_status,
        "expect_provenance": report.provider.provenance_level,
        "expect_pin": report.provider.pin,
    }
    for key, value in stated.items():
        said = item.fields.get(key)
        if said is not None and said[0] != (value or "none"):
            out.append(Violation(rel, said[1], f"{item.id}: claims {key} {said[0]!r}, "
                                 f"the bundle says {value!r}"))
    if report.model.endpoint_kind and "expect_endpoint_kind" not in item.fields:
        out.append(Violation(rel, status_line, f"{item.id}: the bundle's model endpoint was "
                             f"{report.model.endpoint_kind}: done needs 'expect_endpoint_kind' "
                             "to say so"))
    if (blocker := item.fields.get("expect_blocker")) is not None:
        codes = [b.code for b in report.blockers]
        if blocker[0] not in codes:
            out.append(Violation(rel, blocker[1], f"{item.id}: claims blocker {blocker[0]!r}, "
                                 f"the bundle has {codes or 'none'}"))


def _check_admission(record: RouteRecord, rel: str, settings: Settings, out: list[Violation]) -> None:
    if "admission_status" not in record.front:
        return
    from cto_harness.providers.registry import list_admissions

    stated, line = record.front["admission_status"]
    sha = record.front.get("admission_sha256", ("", line))[0]
    try:
        admitted = [r for r in list_admissions(settings) if r.status == "admitted"]
    except Exception as exc:  # an unreadable registry cannot back any statement
        out.append(Violation(rel, line, f"admission registry unreadable: {exc}"))
        return
    if sha:
        actual = "admitted" if any(r.sha256 == sha for r in admitted) else "not_admitted"
    else:
        actual = "admitted" if admitted else "not_admitted"
    if stated != actual:
        subject = f"binary {sha[:12]}…" if sha else "the Case provider"
        out.append(Violation(rel, line, f"states admission_status {stated!r} for {subject}, "
                             f"the registry says {actual!r}"))


def validate_routes(route_dir: Path, settings: Settings, *, today: date | None = None) -> tuple[
    list[RouteRecord], list[Violation]
]:
    today = today or date.today()
    violations: list[Violation] = []
    records: list[RouteRecord] = []
    files = sorted(route_dir.glob("*.md")) if route_dir.is_dir() else []
    if not files:
        violations.append(Violation(str(route_dir), 0, "no route records (*.md) found"))
    seen: dict[str, str] = {}
    for path in files:
        record = parse_record(path, violations)
        if record is None:
            continue
        records.append(record)
        rel = str(path)
        _check_front(record, rel, today, violations)
        for item in record.items:
            where = f"{rel}:{item.line}"
            if item.id in seen:
                violations.append(Violation(rel, item.line,
                                            f"work item {item.id} also defined at {seen[item.id]}"))
            seen[item.id] = where
            _check_item(item, record, rel, violations)
        _check_admission(record, rel, settings, violations)
    return records, violations
