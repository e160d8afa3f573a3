"""What a suite invocation runs, and how a finished run is summed up in one phrase.

* A suite folder remembers its plan: `suite.json` holds the cases and the repeat count. Resuming
  it without naming cases or `--repeat` runs that plan again, not the defaults of the day.
* Which earlier runs are kept: a run whose bundle verifies and was not interrupted is kept,
  unless `--fresh` (rerun every run) or its verdict is one `--retry` names.
* `why`: the blocker codes, the failed pass conditions, or the error of a run, for the progress
  line, the table and the single-run summary.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cto_harness.errors import UsageError

# --retry names -> report verdicts.
RETRY_NAMES = {"failed": "fail", "fail": "fail", "blocked": "blocked", "error": "error"}


def parse_retry(text: str) -> frozenset[str]:
    """`failed,blocked,error` (any of them, comma-separated) -> the verdicts to rerun."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in RETRY_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of failed, blocked, error; got {text!r}")
    return frozenset(RETRY_NAMES[n] for n in names)


def resolve_plan(
    previous: Mapping[str, Any], case_ids: Sequence[str], repeat: int | None,
    all_cases: Callable[[], list[str]],
) -> tuple[list[str], int]:
    """The cases and repeat count of this invocation: the ones given, else the resumed suite's,
    else every case once."""
    if case_ids:
        cases = list(dict.fromkeys(case_ids))
    else:
        remembered = previous.get("cases")
        if remembered is not None and not (isinstance(remembered, list) and all(
                isinstance(c, str) for c in remembered)):
            raise UsageError("suite.json: `cases` is not a list of case ids")
        cases = list(remembered) if remembered else all_cases()
    if repeat is None:
        remembered_repeat = previous.get("repeat", 1)
        if not isinstance(remembered_repeat, int) or remembered_repeat < 1:
            raise UsageError("suite.json: `repeat` is not a positive whole number")
        repeat = remembered_repeat
    return cases, repeat


def keep_earlier(record: Mapping[str, Any] | None, *, fresh: bool,
                 retry: frozenset[str] = frozenset(), challenge: str | None = None) -> bool:
    """Whether an earlier run's record (read from its verifying bundle, or None) is kept. A run
    that does not carry the invocation's challenge is not (the verifier asked for new runs)."""
    if record is None or fresh or record.get("interrupted"):
        return False
    if challenge is not None and record.get("challenge") != challenge:
        return False
    return record.get("verdict") not in retry


def failed_conditions(conditions: Mapping[str, bool]) -> list[str]:
    return [name for name, held in conditions.items() if not held]


def why(record: Mapping[str, Any]) -> str:
    """The reason of a run that did not pass, in a few words ('' for a pass or no record)."""
    if record.get("status") == "interrupted" or record.get("interrupted"):
        return "interrupted"
    if record.get("blockers"):
        return ", ".join(record["blockers"])
    if record.get("failed_conditions"):
        return "failed: " + ", ".join(record["failed_conditions"])
    if record.get("status") == "no_bundle":
        return "no bundle (the worker stopped before sealing)"
    return ""
