"""The one error model: each family maps to its contract exit code, every blocker code is in the
enum and in the report's JSON Schema, and an unknown code cannot be raised."""

from __future__ import annotations

import json

import pytest

from conftest import REPO_ROOT
from cto_harness.errors import (
    Blocked,
    BlockerCode,
    BundleInvalid,
    CheckFailed,
    HarnessFault,
    Interrupted,
    PolicyInvalid,
    SignatureInvalid,
    UsageError,
    exit_code_for,
    one_line,
)


@pytest.mark.parametrize(("exc", "code"), [
    (UsageError("bad flag"), 64),
    (PolicyInvalid("policy.toml: unknown key"), 64),
    (Blocked(BlockerCode.BUN_MISSING, "no bun"), 2),
    (BundleInvalid("digest mismatch"), 1),
    (SignatureInvalid("not signed"), 1),
    (CheckFailed("it passed"), 1),
    (HarnessFault("git fast-import failed"), 3),
    (Interrupted("SIGTERM"), 3),
    (KeyboardInterrupt(), 3),
    (RuntimeError("a bug"), 3),
])
def test_each_family_maps_to_its_exit_code(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code
    line = one_line(exc)
    assert "\n" not in line and line.startswith("cto-harness: ")


def test_a_blocked_line_names_its_code() -> None:
    assert one_line(Blocked("source_mutated", "changed")) == (
        "cto-harness: blocked: source_mutated: changed")


def test_an_unknown_blocker_code_cannot_be_raised() -> None:
    with pytest.raises(ValueError, match="not_a_code"):
        Blocked("not_a_code", "a typo must never reach a report")


def test_every_blocker_code_is_listed_by_the_report_schema() -> None:
    schema = json.loads((REPO_ROOT / "schemas" / "report.schema.json").read_text())
    listed = set(schema["$defs"]["BlockerCode"]["enum"])
    assert listed == {code.value for code in BlockerCode}


def test_the_contract_codes_keep_their_values() -> None:
    # DESIGN sections 3, 4 and 6 name these strings; scripts match on them.
    for value in ("engine_not_allowed", "stage_not_authorized", "provider_unavailable",
                  "model_not_admitted", "task_contract_invalid", "provider_timeout",
                  "baseline_failed", "bun_missing", "source_commit_mismatch", "dist_missing",
                  "not_executable", "identity_mismatch", "credentials_missing"):
        assert BlockerCode(value).value == value
