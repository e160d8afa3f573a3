"""The route-record validator: front matter, work-item ids and evidence claims."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT, REPO_ROOT
from cto_harness.core.run import execute_run
from cto_harness.fsutil import sha256_file
from cto_harness.settings import Settings
from cto_harness.validators.routes import validate_routes

FRONT = """---
title: A test record
status: active
lifecycle_classification: incubating
owner: tests
created: 2026-01-02
last_reviewed: 2026-02-03
core_promotion_status: not-promoted
route: stage2-run
---

# Record
"""


def _validate(route_dir: Path) -> list[str]:
    _, violations = validate_routes(route_dir, Settings.from_env(), today=date(2026, 11, 23))
    return [str(v) for v in violations]


def _record(tmp_path: Path, text: str, name: str = "r.md") -> Path:
    route_dir = tmp_path / "route"
    route_dir.mkdir(exist_ok=True)
    (route_dir / name).write_text(text)
    return route_dir


def test_the_repository_records_validate_through_the_script() -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "validate_cto_child.py"),
                           "--json"], capture_output=True, text=True)
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, result["violations"]
    assert result["ok"] is True
    assert result["records"] >= 3
    assert result["work_items"] >= 3


def test_a_valid_record_has_no_violation(tmp_path: Path) -> None:
    assert _validate(_record(tmp_path, FRONT)) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("owner: tests\n", ""), "r.md:1: front matter lacks 'owner'"),
        (lambda t: t.replace("not-promoted", "promoted"), "r.md:8: core_promotion_status"),
        (lambda t: t.replace("status: active", "status: shiny"), "r.md:3: status 'shiny'"),
        (lambda t: t.replace("2026-02-03", "2025-12-31"), "r.md:7: last_reviewed is before created"),
        (lambda t: t.replace("2026-02-03", "2027-01-01"), "r.md:7: last_reviewed 2027-01-01 is in"),
        (lambda t: t.replace("2026-01-02", "Jan 2"), "r.md:6: created 'Jan 2' is not a date"),
        (lambda t: t.replace("route: stage2-run", "route: stage2-run\ncolour: blue"),
         "r.md:10: unknown front matter key 'colour'"),
        (lambda t: t.replace("---\ntitle", "title", 1), "r.md:1: no front matter"),
    ],
)
def test_front_matter_violations_are_named_with_file_and_line(
    tmp_path: Path, edit, expected: str  # type: ignore[no-untyped-def]
) -> None:
    found = _validate(_record(tmp_path, edit(FRONT)))
    assert any(expected in v for v in found), found


def test_work_item_ids_must_be_well_formed_and_unique(tmp_path: Path) -> None:
    route_dir = _record(tmp_path, FRONT + "\n### CTO-WORK-001: one\n- status: open\n"
                        "\n### CTO-WORK-1: bad id\n- status: open\n")
    _record(tmp_path, FRONT + "\n### CTO-WORK-001: again\n- status: open\n", name="s.md")
    found = _validate(route_dir)
    assert any("r.md:17: work item id 'CTO-WORK-1' is not CTO-WORK-NNN" in v for v in found), found
    assert any("s.md:14: work item CTO-WORK-001 also defined at" in v for v in found), found


def test_done_without_a_bundle_is_rejected(tmp_path: Path) -> None:
    text = FRONT + "\n### CTO-WORK-016: a real pass\n- status: done\n- engine: case\n" \
        "- expect_verdict: pass\n"
    found = _validate(_record(tmp_path, text))
    assert any("CTO-WORK-016: marked done but cites no run bundle" in v for v in found), found


def _done_item(bundle: str, digest: str, *, engine: str = "fake", verdict: str = "pass") -> str:
    return (FRONT + f"\n### CTO-WORK-099: evidence backed\n- status: done\n- engine: {engine}\n"
            f"- expect_verdict: {verdict}\n- evidence: {bundle}\n- report_sha256: {digest}\n")


def _bundle_in(route_dir: Path) -> tuple[str, str]:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    target = route_dir / "evidence" / "b1"
    shutil.copytree(result.run_dir, target, ignore=shutil.ignore_patterns("workspace"))
    return "evidence/b1", sha256_file(target / "report.json")


def test_a_done_item_backed_by_a_verifying_bundle_is_accepted(tmp_path: Path) -> None:
    route_dir = _record(tmp_path, FRONT)
    bundle, digest = _bundle_in(route_dir)
    (route_dir / "r.md").write_text(_done_item(bundle, digest))
    assert _validate(route_dir) == []


def test_a_done_item_whose_bundle_says_otherwise_is_rejected(tmp_path: Path) -> None:
    route_dir = _record(tmp_path, FRONT)
    bundle, digest = _bundle_in(route_dir)
    (route_dir / "r.md").write_text(_done_item(bundle, digest, engine="case", verdict="blocked"))
    found = _validate(route_dir)
    assert any("claims engine 'case', the bundle says 'fake'" in v for v in found), found
    assert any("claims expect_verdict 'blocked', the bundle says 'pass'" in v for v in found), found


def test_stated_endpoint_outcome_admission_provenance_and_pin_are_checked(
    tmp_path: Path
) -> None:
    route_dir = _record(tmp_path, FRONT)
    bundle, digest = _bundle_in(route_dir)
    claims = ("- expect_endpoint_kind: scripted\n- expect_provider_outcome: failed\n"
              "- expect_admission: not_admitted\n- expect_provenance: built\n"
              "- expect_pin: " + "a" * 40 + "\n")
    (route_dir / "r.md").write_text(_done_item(bundle, digest) + claims)
    found = _validate(route_dir)
    # The fake lane: no model endpoint, its agent's own "completed", builtin, admitted, no pin.
    for fragment in ("claims expect_endpoint_kind 'scripted', the bundle says None",
                     "claims expect_provider_outcome 'failed', the bundle says 'completed'",
                     "claims expect_admission 'not_admitted', the bundle says 'admitted'",
                     "claims expect_provenance 'built', the bundle says 'builtin'",
                     "claims expect_pin 'aaaa"):
        assert any(fragment in v for v in found), (fragment, found)
    honest = ("- expect_endpoint_kind: none\n- expect_provider_outcome: completed\n"
              "- expect_admission: admitted\n- expect_provenance: builtin\n- expect_pin: none\n")
    (route_dir / "r.md").write_text(_done_item(bundle, digest) + honest)
    assert _validate(route_dir) == []


def test_a_done_item_with_a_tampered_bundle_or_wrong_digest_is_rejected(tmp_path: Path) -> None:
    route_dir = _record(tmp_path, FRONT)
    bundle, digest = _bundle_in(route_dir)
    (route_dir / "r.md").write_text(_done_item(bundle, "0" * 64))
    assert any("report_sha256 is not the bundle's report" in v for v in _validate(route_dir))
    (route_dir / "r.md").write_text(_done_item(bundle, digest))
    (route_dir / bundle / "test.log").write_text("rewritten\n")
    assert any("does not verify: digest mismatch: test.log" in v for v in _validate(route_dir))


def test_a_stated_admission_status_must_agree_with_the_registry(tmp_path: Path) -> None:
    from cto_harness.providers.registry import AdmissionRecord, record_admission

    text = FRONT.replace("route: stage2-run", "route: provider-admission\nadmission_status: admitted")
    route_dir = _record(tmp_path, text)
    found = _validate(route_dir)
    assert any("states admission_status 'admitted'" in v and "'not_admitted'" in v for v in found)
    settings = Settings.from_env()
    record_admission(settings, AdmissionRecord(
        sha256="a" * 64, status="admitted", provenance_level="built", store_path="/x/ca",
        size_bytes=1, source_url="https://github.com/workos/case.git", commit="b" * 40,
        policy_commit="b" * 40, admitted_at="2026-11-23T00:00:00Z", build_report="/x/r.json",
        identity_evidence_sha256="c" * 64,
    ))
    assert _validate(route_dir) == []


def test_the_real_case_pass_must_say_its_endpoint_was_scripted(tmp_path: Path) -> None:
    """CTO-WORK-016 cites a real Case bundle whose model endpoint was scripted: a record that
    drops the statement, or claims `live`, is rejected."""
    route_dir = tmp_path / "route"
    shutil.copytree(REPO_ROOT / "docs" / "route", route_dir)
    record = route_dir / "stage2-run-route.md"
    text = record.read_text()
    assert "- expect_endpoint_kind: scripted\n" in text
    assert _validate(route_dir) == []
    record.write_text(text.replace("- expect_endpoint_kind: scripted\n", "", 1))
    assert any("CTO-WORK-016: the bundle's model endpoint was scripted: done needs "
               "'expect_endpoint_kind'" in v for v in _validate(route_dir))
    record.write_text(text.replace("- expect_endpoint_kind: scripted\n",
                                   "- expect_endpoint_kind: live\n", 1))
    assert any("CTO-WORK-016: claims expect_endpoint_kind 'live', the bundle says 'scripted'"
               in v for v in _validate(route_dir))
