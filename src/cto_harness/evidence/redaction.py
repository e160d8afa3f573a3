"""Secret values out of evidence: whole, and any long piece of one.

Replacing only the whole value is not enough, because the harness itself reshapes what a
provider writes before it lands in the bundle: it cuts fields to a length (a phase summary, an
event field, a log at its cap), which can leave all of a key but its last characters, and
report.md escapes Markdown punctuation (`_` becomes `\\_`), which splits a key the provider
echoed verbatim. So every string of the report is redacted before anything renders it
(`redact_value`), and every file after (`redact`): a run of the value's first half, or of its
last half, extended as far as the text goes on matching the value, becomes `[REDACTED]`. A piece
shorter than half the value may remain; no cut can leave more.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import Any, AnyStr

REDACTED = "[REDACTED]"
# Values shorter than this are not treated as secrets (settings.secret_values has the same bound).
MIN_SECRET = 4


def _spans(data: AnyStr, secret: AnyStr) -> Iterator[tuple[int, int]]:
    """(start, end) of every piece of `data` that is a prefix or a suffix of `secret` at least
    half its length (the whole value is both)."""
    anchor = max(MIN_SECRET, len(secret) // 2)
    head, tail = secret[:anchor], secret[-anchor:]
    at = data.find(head)
    while at >= 0:
        end = at + anchor
        if data.startswith(secret, at):  # the whole value: no character-by-character walk
            end = at + len(secret)
        while end < len(data) and end - at < len(secret) and data[end] == secret[end - at]:
            end += 1
        yield at, end
        at = data.find(head, at + 1)
    at = data.find(tail)
    while at >= 0:
        start, matched = at, len(secret) - anchor
        if at >= matched and data.startswith(secret, at - matched):
            start, matched = at - matched, 0
        while start > 0 and matched > 0 and data[start - 1] == secret[matched - 1]:
            start, matched = start - 1, matched - 1
        yield start, at + anchor
        at = data.find(tail, at + 1)


_COVERED = re.compile(b"\x01+")


def _redact(data: AnyStr, secrets: Iterable[AnyStr], marker: AnyStr) -> AnyStr:
    # The pieces are marked in a map of one byte a character (overlapping or touching pieces
    # are one run), and the result is written as it is made: a list of every piece, sorted,
    # then of every kept slice, cost ~33 bytes a byte of a log or patch full of an 8-character
    # secret (32 GiB for a 1 GiB patch.diff).
    covered = bytearray(len(data))
    for secret in secrets:
        for start, end in _spans(data, secret):
            covered[start:end] = b"\x01" * (end - start)
    if covered.find(1) < 0:
        return data
    last = 0
    if isinstance(data, bytes):
        assert isinstance(marker, bytes)
        out = bytearray()
        for run in _COVERED.finditer(covered):
            out += data[last:run.start()]
            out += marker
            last = run.end()
        out += data[last:]
        return bytes(out)
    text = io.StringIO()
    for run in _COVERED.finditer(covered):
        text.write(data[last:run.start()])
        text.write(marker)
        last = run.end()
    text.write(data[last:])
    return text.getvalue()


class Redactor:
    """The secret values of a run, applied to bytes, text or any JSON-shaped value."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._raw = [s.encode() for s in self.secrets]

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def bytes(self, data: bytes) -> bytes:
        return _redact(data, self._raw, REDACTED.encode()) if self._raw else data

    def text(self, text: str) -> str:
        return _redact(text, self.secrets, REDACTED) if self.secrets else text

    def value(self, value: Any) -> Any:
        """Every string in a JSON-shaped value (keys included), redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v)
                    for k, v in value.items()}
        return value
