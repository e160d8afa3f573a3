"""Make bundle text inert before it reaches a page or a terminal.

Every string in a bundle is provider-controlled: file names, claims, test names, event text. The
pages escape HTML (Jinja autoescape), and everything read from a bundle passes through here first,
so control characters (ANSI escapes, carriage returns, NUL) and invisible formatting characters
(bidirectional overrides, zero-width joiners) are shown as visible tokens instead of acting.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# C0 and C1 controls (except tab and newline, handled per context), DEL, and the Unicode
# formatting characters that reorder or hide text (Trojan Source, zero-width tricks).
_HIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]"
)


def _token(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ␛ for ESC, ␍ for CR
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\u27e8U+{code:04X}\u27e9"  # ⟨U+202E⟩


def inert(text: str, *, multiline: bool = False) -> str:
    """`text` with every hidden or acting character made visible. One-line values also show
    newlines and tabs as tokens, so a file name cannot start a new line."""
    cleaned = _HIDDEN.sub(_token, text)
    if not multiline:
        cleaned = cleaned.replace("\n", "\u2424").replace("\t", "\u2409")
    return cleaned


def inert_tree(value: Any, *, multiline: bool = False) -> Any:
    """A JSON value with every string made inert, one-line style unless `multiline` (keys
    always): a newline in a file name shows as ␤, never as a break or a space."""
    if isinstance(value, str):
        return inert(value, multiline=multiline)
    if isinstance(value, dict):
        return {inert(str(k)): inert_tree(v, multiline=multiline) for k, v in value.items()}
    if isinstance(value, list):
        return [inert_tree(v, multiline=multiline) for v in value]
    return value


def read_text(path: Path, *, limit: int) -> tuple[str, bool]:
    """A file's text (at most `limit` bytes, undecodable bytes replaced), made inert with its
    lines kept; and whether it was cut. Never follows a symlink."""
    if path.is_symlink() or not path.is_file():
        return "", False
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    cut = len(data) > limit
    return inert(data[:limit].decode("utf-8", errors="replace"), multiline=True), cut


def read_json(path: Path, *, limit: int = 32 << 20, multiline: bool = False) -> Any:
    """A JSON file made inert, or None when it is missing, a link, too large or malformed."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    return inert_tree(data, multiline=multiline)


def read_jsonl(path: Path, *, limit: int = 32 << 20, max_rows: int = 5000) -> tuple[list[Any], int]:
    """The objects of a JSON-lines file made inert, and how many lines could not be read."""
    text, _cut = read_text(path, limit=limit)
    rows: list[Any] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        if len(rows) >= max_rows:
            bad += 1
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(inert_tree(row))
        else:
            bad += 1
    return rows, bad
