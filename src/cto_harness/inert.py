"""Make provider-controlled text inert before it reaches a page, a terminal or report.md.

Every string in a bundle is provider-controlled: file names, claims, test names, event text.
There is one rule for showing such text, `inert`: control characters (ANSI escapes, carriage
returns, NUL) and invisible formatting characters (bidirectional overrides, zero-width joiners,
lone surrogates from bytes that were not UTF-8, ...: everything `str.isprintable` rejects), and
the printable characters that show nothing (default-ignorable code points such as U+034F or a
variation selector, the blank Braille pattern), are shown as visible tokens instead. Built on it:

* `markdown(text)`: `inert`, then every Markdown and HTML metacharacter escaped (report.md), so
  a name like `**PASS**`, a `<!--` comment or a `|` cannot become markup, a heading or a cell;
  `code_fence(text)` for blocks (a fence the text cannot close);
* the pages escape HTML (Jinja autoescape) after `inert`; the CLI prints `inert` text.

File names are data before they are text: `path_text(raw)` turns a name (bytes) into the string
the report stores, in the same tokens, made injective so that two different names never show
the same (a byte that is not UTF-8 is `⟨0xFF⟩`). Such a string is already inert.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

_KEPT_MULTILINE = frozenset("\n\t")
# Printable to Python, yet nothing on screen: Unicode's default-ignorable code points (the
# combining grapheme joiner, variation selectors, Hangul fillers, tags...) and the blank Braille
# pattern. `text.py` with one of them after it looks like `text.py`; shown as a token, it cannot.
_INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2060-\u206f\u2800\u3164"
    "\ufe00-\ufe0f\uffa0\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


def _shown(char: str) -> bool:
    return char.isprintable() and not _INVISIBLE.match(char)


def _token(char: str) -> str:
    code = ord(char)
    if char == "\n":
        return "\u2424"  # ␤
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ␛ for ESC, ␍ for CR
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\u27e8U+{code:04X}\u27e9"  # ⟨U+202E⟩


def inert(text: str, *, multiline: bool = False) -> str:
    """`text` with every hidden or acting character made visible. One-line values also show
    newlines and tabs as tokens, so a file name cannot start a new line."""
    if text.isprintable() and not _INVISIBLE.search(text):
        return text
    kept = _KEPT_MULTILINE if multiline else frozenset()
    return "".join(c if _shown(c) or c in kept else _token(c) for c in text)


# Where `inert_tree` stops: far deeper than any record, far shallower than the interpreter's
# recursion limit (a provider's JSON may nest up to the parser's).
TOO_DEEP = "⟨nested too deep⟩"
_MAX_TREE_DEPTH = 64


def inert_tree(value: Any, *, multiline: bool = False, _depth: int = 0) -> Any:
    """A JSON value with every string made inert, one-line style unless `multiline` (keys
    always): a newline in a file name shows as ␤, never as a break or a space. A list or
    object nested past 64 levels becomes the text `⟨nested too deep⟩`."""
    if isinstance(value, str):
        return inert(value, multiline=multiline)
    if isinstance(value, dict | list) and _depth >= _MAX_TREE_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {inert(str(k)): inert_tree(v, multiline=multiline, _depth=_depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [inert_tree(v, multiline=multiline, _depth=_depth + 1) for v in value]
    return value


# --- terminals ------------------------------------------------------------------------------


def display_width(char: str) -> int:
    """Columns `char` takes on a terminal: 2 for wide and fullwidth characters, 0 for combining
    marks, 1 otherwise."""
    import unicodedata

    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def fit_width(text: str, columns: int) -> str:
    """`text` cut to at most `columns` terminal columns (with `…` where it was cut): a line cut
    by characters, not columns, wrapped on a terminal, and a live line that wraps leaves a stale
    row behind at every redraw."""
    widths = [display_width(c) for c in text]
    if sum(widths) <= columns:
        return text
    used = 0
    for index, width in enumerate(widths):
        if used + width > columns - 1:  # room for the `…`
            return text[:index] + "…"
        used += width
    return text


def for_terminal(lines: list[str], stream: object) -> list[str]:
    """Lines of provider-derived text as a terminal shows them: each cut to the terminal's
    width, so none wraps (a name padded with spaces could otherwise wrap into a line that looks
    like the harness's own, `verdict PASS` under the real `verdict FAIL`). Unchanged where
    `stream` is no terminal (a file or a pipe keeps every byte)."""
    try:
        if not stream.isatty():  # type: ignore[attr-defined]
            return lines
        columns = os.get_terminal_size(stream.fileno()).columns  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return lines
    return [fit_width(line, max(columns, 20)) for line in lines]


# --- names --------------------------------------------------------------------------------------


def path_text(raw: bytes | str) -> str:
    """A file name as the report stores it: inert, in the same tokens as `inert`, and injective
    (two different names never show the same): a byte that is not UTF-8 is `⟨0xFF⟩`, and a
    name's own `⟨` or control-picture character is itself written as a token, so every token in
    the result stands for exactly one thing."""
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    if text.isprintable() and not _INVISIBLE.search(text) and \
            not any(c == "\u27e8" or "\u2400" <= c <= "\u2426" for c in text):
        return text
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\u27e80x{code - 0xDC00:02X}\u27e9")
        elif char == "\u27e8" or 0x2400 <= code <= 0x2426:  # our own token characters
            out.append(f"\u27e8U+{code:04X}\u27e9")
        elif not _shown(char):
            out.append(_token(char))
        else:
            out.append(char)
    return "".join(out)


# --- report.md ------------------------------------------------------------------------------------

# These three become HTML entities, so that no raw HTML (comments, tags) survives anywhere.
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
# Backslash-escaped: every ASCII punctuation character that can take part in markup or in an
# autolink (CommonMark makes an escaped one literal): emphasis, code, links, images, tables,
# math, and the `www.`, `https:` and `name@host.` of GFM's autolinks (their `.`, `:` and `@`).
# Kept plain for a readable report.md: characters that are markup only at the start of a line
# (`-`, `+`, `=`), which provider text never is (its newlines are tokens), and ones that are
# never markup (`/`, `,`, `;`, quotes, `?`, `%`, `^`).
_MARKDOWN_PUNCTUATION = frozenset("!#$()*.:@[\\]_`{|}~")


def markdown(text: object) -> str:
    """Any value as inert Markdown text: no markup, no HTML, no control character, one line."""
    out = []
    for char in inert(str(text)):
        if char in _ENTITIES:
            out.append(_ENTITIES[char])
        elif char in _MARKDOWN_PUNCTUATION:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def code_span(text: str) -> str:
    """Inline code on one line that `text` cannot close: delimited by a backtick run longer
    than any in it (nothing inside a code span is markup)."""
    value = inert(text)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def code_fence(text: str) -> str:
    """A fenced block that `text` cannot close: the fence is longer than any backtick run in it."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{inert(text, multiline=True)}\n{fence}"


# --- reading bundle text ------------------------------------------------------------------------


def read_text(path: Path, *, limit: int) -> tuple[str, bool]:
    """A file's text (at most `limit` bytes, undecodable bytes replaced), made inert with its
    lines kept; and whether it was cut. Never follows a symlink."""
    if path.is_symlink() or not path.is_file():
        return "", False
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    cut = len(data) > limit
    return inert(data[:limit].decode("utf-8", errors="replace"), multiline=True), cut


def read_ends(path: Path, *, limit: int) -> tuple[str, bool]:
    """Like `read_text`, but a file over `limit` bytes shows its first and its last half of
    `limit`, with the bytes left out named between them: what comes last in a log (the
    harness's own summary after the tested code's output) is never cut away by what came
    first (a tested program that prints a forged summary, then 300 KiB of blank lines)."""
    if path.is_symlink() or not path.is_file():
        return "", False
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size <= limit:
            data = handle.read(limit)
            return inert(data.decode("utf-8", errors="replace"), multiline=True), False
        head = handle.read(limit // 2)
        handle.seek(size - limit // 2)
        tail = handle.read(limit // 2)
    text = (f"{head.decode('utf-8', errors='replace')}\n"
            f"\u27e8{size - len(head) - len(tail)} bytes not shown\u27e9\n"
            f"{tail.decode('utf-8', errors='replace')}")
    return inert(text, multiline=True), True


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
