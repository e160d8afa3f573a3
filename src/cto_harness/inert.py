"""Showing provider-controlled text inert: one escaping rule for names, terminals and report.md.

A provider names files, writes event logs and prints output; any of it can reach a report or a
terminal. Three functions, each built on the one before, are the only way such text is shown:

* `path_text(raw)`: a file name (bytes) as text. Injective, so two different names never show
  the same: `\\` becomes `\\\\`, a byte that is not UTF-8 becomes `\\x80`-`\\xff`, an ASCII
  control `\\x00`-`\\x7f`, and every other control or invisible character (C1 controls, bidi
  overrides, zero-width joiners, ...) `\\uNNNN`. Valid UTF-8 names without such characters show
  unchanged.
* `printable(text)`: any text with control and formatting characters shown as escapes, never
  acted on: what the CLI prints (no ANSI sequence can erase or rewrite a terminal line);
  `terminal(text)` does the same line by line, keeping the line breaks the harness wrote.
* `markdown(text)`: `printable`, then every Markdown and HTML metacharacter escaped, so a name
  like `**PASS**`, a `<!--` comment or a `|` cannot become markup, a heading or a table cell.
"""

from __future__ import annotations

# These three become HTML entities, so that no raw HTML (comments, tags) survives anywhere.
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
# Backslash-escaped: every character that can open inline markup (emphasis, code, links,
# images, tables, strike-through, math, headings). Provider text never starts a line (newlines
# are escapes), so line-start markers such as `-`, `+` or `1.` stay plain and readable.
_MARKDOWN_PUNCTUATION = frozenset("\\`*_{}[]()!|~$#")


def _escape_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:  # an ASCII control; \x80-\xff are kept for raw bytes, so no two collide
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with every control or invisible character shown as an escape.

    Python's `str.isprintable` is the rule: controls (Cc), formats such as bidi overrides and
    zero-width joiners (Cf), separators other than the ASCII space (Z*), surrogates (a byte that
    was not UTF-8), private-use and unassigned code points are all escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def terminal(text: str) -> str:
    """Lines for a terminal: each line `printable`, the line breaks kept."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def path_text(raw: bytes | str) -> str:
    """A file name as text, escaped so that different names never show the same."""
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    return printable(text.replace("\\", "\\\\"))


def markdown(text: object) -> str:
    """Any value as inert Markdown text: no markup, no HTML, no control character."""
    out = []
    for char in printable(str(text)):
        if char in _ENTITIES:
            out.append(_ENTITIES[char])
        elif char in _MARKDOWN_PUNCTUATION:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def code_fence(text: str) -> str:
    """A fenced block that `text` cannot close: the fence is longer than any backtick run in it."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    body = "\n".join(printable(line) for line in text.split("\n"))
    return f"{fence}\n{body}\n{fence}"
