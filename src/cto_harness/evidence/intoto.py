"""The one in-toto Statement v1 builder: the signed evidence envelope and the provider
provenance (SLSA) both wrap their predicate in it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


def statement(subjects: Mapping[str, str], predicate_type: str, predicate: Mapping[str, Any]
              ) -> dict[str, Any]:
    """An in-toto Statement v1 over `subjects` (name -> sha256) with its typed predicate."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}}
                    for name, digest in subjects.items()],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }
