"""`hostile_record`: when HOSTILE_REPORT names a file, each test appends what it observed there
(one JSON line), before asserting anything: `tools/hostile_report.py` runs this suite through
pytest and renders docs/security.md from those lines."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hostile_suite import EXPECTED, Attack, Observation

Record = Callable[..., None]


@pytest.fixture
def hostile_record() -> Record:
    target = os.environ.get("HOSTILE_REPORT")

    def record(attack: Attack, tier: str, *, obs: Observation | None = None,
               skipped: str | None = None) -> None:
        if not target:
            return
        expected = EXPECTED[attack.name][tier]
        row: dict[str, Any] = {
            "attack": attack.name, "title": attack.title, "tier": tier,
            "expected": {"verdict": expected.verdict, "outcome": expected.outcome,
                         "blocker": expected.blocker},
        }
        if obs is None:
            row["skipped"] = skipped or "skipped"
        else:
            row.update(verdict=obs.verdict, blockers=obs.blockers, outcome=obs.outcome,
                       evidence=obs.evidence, verify_error=obs.verify_error,
                       left_running=obs.left_running, secret_in=obs.secret_in,
                       seconds=round(obs.seconds, 2))
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    return record
