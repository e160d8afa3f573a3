"""Secret values out of evidence (`evidence/redaction.py`): whole, and the long pieces the
harness's own cuts leave (a field cut to a length keeps a key's head; a log's tail, its end)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from cto_harness.evidence.bundle import redact_files
from cto_harness.evidence.redaction import Redactor

KEY = "sk-ant-api03-Zx_9kQ2_wLr8-TnY4_vB7mP1sD6fH3jK_a9Q"


def test_whole_value_and_long_pieces_are_redacted() -> None:
    redactor = Redactor([KEY])
    assert redactor.text(f"a {KEY} b") == "a [REDACTED] b"
    assert redactor.text("x" * 260 + KEY[:40] + "…") == "x" * 260 + "[REDACTED]…"  # a cut field
    assert redactor.text(KEY[-30:] + " end") == "[REDACTED] end"  # a tail read of a log
    assert redactor.text(KEY[:20]) == KEY[:20]  # shorter than half: may stay
    assert redactor.value({"k": [KEY, 3, {KEY: KEY[:30]}]}) == {
        "k": ["[REDACTED]", 3, {"[REDACTED]": "[REDACTED]"}]}


def test_a_file_cut_inside_the_key_is_redacted(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_bytes(b"pad " * 10 + KEY[:45].encode())  # a log capped inside the key
    assert redact_files([log], [KEY]) == ["stdout.log"]
    assert log.read_bytes() == b"pad " * 10 + b"[REDACTED]"


def test_redaction_memory_is_a_few_bytes_a_byte_whatever_the_matches() -> None:
    # A log or patch full of a short secret, whole or cut just past its first half: a list of
    # every piece and every kept slice cost ~33 bytes a byte (32 GiB for a 1 GiB patch.diff).
    secret = "hunter22"
    redactor = Redactor([secret])
    for data, expected in [(secret.encode() * 40_000, b"[REDACTED]"),
                           (b"hunte!" * 50_000, b"[REDACTED]!" * 50_000)]:
        tracemalloc.start()
        try:
            cleaned = redactor.bytes(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert cleaned == expected
        assert peak < 3 * (len(data) + len(cleaned))
    assert redactor.text("x hunter22 y hunte") == "x [REDACTED] y [REDACTED]"
