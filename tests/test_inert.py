"""Provider-named text shown inert: names escaped injectively, report.md without markup from a
provider, the terminal without escape sequences, a bundle with a planted FIFO refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import HARNESS_ROOT, CaseFactory
from cto_harness.core.run import execute_run
from cto_harness.evidence.verify import BundleInvalid, verify_bundle
from cto_harness.inert import TOO_DEEP, code_fence, inert, inert_tree, markdown, path_text


def test_path_text_is_injective_over_odd_names() -> None:
    names = [b"plain.py", b"a\\b", b"a\\\\b", b"\x80", b"\xc2\x80", b"\x1b[2J", "\u241b[2J".encode(),
             b"caf\xe9", "café".encode(), b"new\nline", "new\u2424line".encode(),
             "\u202etxt".encode(), "\u27e8U+202E\u27e9txt".encode(), "\u27e80xFF\u27e9".encode(),
             b"\xff\xfe"]
    shown = [path_text(n) for n in names]
    assert len(set(shown)) == len(names)
    assert path_text(b"plain.py") == "plain.py" and path_text("café".encode()) == "café"
    assert all(s.isprintable() for s in shown)


def test_characters_that_show_nothing_are_tokens() -> None:
    # Printable to Python, invisible on screen: each made `text.py` look like `text.py`.
    for hidden in ("\u034f", "\ufe0f", "\u3164", "\u2800", "\u2060", "\U000e0041"):
        assert path_text(f"text.py{hidden}") != "text.py"
        assert path_text(f"text.py{hidden}") == f"text.py\u27e8U+{ord(hidden):04X}\u27e9"
        assert inert(f"completed{hidden}") != "completed"
    assert inert("héllo ✓ 日本") == "héllo ✓ 日本"  # visible text stays as it is


def test_inert_leaves_no_control_character() -> None:
    hostile = "ok\x1b[2J\x1b[1;1Hverdict PASS\r\x07\u202e\u200b\udcff\U000e0041"
    assert inert(hostile).isprintable()
    assert "\x1b" not in inert(hostile) and "\u241b" in inert(hostile)
    assert inert("a\nb") == "a\u2424b"
    assert inert("line one\nline\x1b two", multiline=True).split("\n") == [
        "line one", "line\u241b two"]


def test_markdown_leaves_no_markup_no_html_and_one_line() -> None:
    text = markdown("x\n\n# cto-harness run — **PASS**\n<!-- hidden | [a](b) `c` ~~d~~ $e$")
    assert "\n" not in text
    for raw in ("<!--", "**", "[a]", "`c`", "~~", "$e$", " | "):
        assert raw not in text
    assert "&lt;" in text and "\\*\\*PASS\\*\\*" in text


def test_a_code_fence_cannot_be_closed_from_inside() -> None:
    block = code_fence('{"x": "```\\n# PASS"}\n````')
    fence = block.split("\n", 1)[0]
    assert set(fence) == {"`"} and len(fence) == 5
    assert block.count(fence) == 2


def test_report_md_shows_hostile_names_and_claims_inert(case_factory: CaseFactory) -> None:
    script = (
        "import json, os\n"
        "for name in ['slugkit/x\\n\\n# cto-harness run r1 — **PASS**\\n\\n<!--.py',\n"
        "             'slugkit/\\x1b[2Jok | yes | .py']:\n"
        "    open(name, 'w').write('x = 1\\n')\n"
        "with open(os.environ['CTO_FAKE_EVENTS'], 'a') as h:\n"
        "    h.write(json.dumps({'event': 'pipeline_end', 'outcome': '```\\n# **PASS**'}) + '\\n')\n"
        # Valid JSON, not UTF-8 once decoded: it once stopped report.json from being written.
        "    h.write(json.dumps({'event': 'phase_end', 'phase': 'x', 'result': '\\udcff'}) + '\\n')\n")
    root = case_factory("md-forge", files={"attack.py": script}, toml_edit=lambda t: t.replace(
        'overlay = "fake/solution"', 'overlay = "fake/solution"\nscript = "attack.py"'))
    result = execute_run("md-forge", harness_root=root)
    verify_bundle(result.run_dir)
    assert {"phase": "x", "agent": None, "outcome": None, "result": "\u27e8U+DCFF\u27e9"} in \
        result.report.provider_claims["phase_results"]
    text = (result.run_dir / "report.md").read_text(encoding="utf-8")
    assert [line for line in text.splitlines() if line.startswith("# ")] == [
        text.splitlines()[0]]
    assert "FAIL" in text.splitlines()[0]
    assert "<!--" not in text and "\x1b" not in text
    paths = {c.path for c in result.report.changed_files}
    assert "slugkit/x\u2424\u2424# cto-harness run r1 — **PASS**\u2424\u2424<!--.py" in paths
    rows = [line for line in text.splitlines() if line.startswith("| slugkit")]
    assert all(line.count(" | ") == 4 for line in rows), rows  # no cell forged by a `|`


def test_event_lines_no_parser_step_can_take_are_counted_not_a_harness_error(
        case_factory: CaseFactory) -> None:
    # A number of more digits than Python converts, a line nested just under the parser's own
    # limit (it parses; a later walk of it would not), one nested past it: each made the run
    # `error`, a failure a provider could always shift onto the harness.
    script = (
        "import os\n"
        "with open(os.environ['CTO_FAKE_EVENTS'], 'a') as h:\n"
        "    h.write('{\"event\": \"x\", \"n\": ' + '9' * 5000 + '}\\n')\n"
        "    h.write('{\"event\": \"x\", \"n\": ' + '[' * 950 + ']' * 950 + '}\\n')\n"
        "    h.write('{\"event\": \"x\", \"n\": ' + '[' * 100000 + ']' * 100000 + '}\\n')\n"
        "    h.write('{\"event\": \"x\", \"n\": [[[1]]]}\\n')\n")
    root = case_factory("deep-events", files={"attack.py": script}, toml_edit=lambda t: t.replace(
        'overlay = "fake/solution"', 'overlay = "fake/solution"\nscript = "attack.py"'))
    result = execute_run("deep-events", harness_root=root)
    assert result.report.verdict == "pass", result.report.blockers
    assert result.report.provider_claims["unreadable_event_lines"] == 3
    verify_bundle(result.run_dir)


def test_inert_tree_stops_at_a_depth_no_record_reaches() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(500):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    shown = inert_tree({"k": deep})
    for _ in range(63):
        shown = shown[0] if isinstance(shown, list) else shown["k"]
    assert shown == [TOO_DEEP]


def test_verify_refuses_a_fifo_planted_in_a_bundle_and_the_cli_prints_it_inert(
        tmp_path: Path) -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    verify_bundle(result.run_dir)
    os.mkfifo(result.run_dir / "backend" / "x\x1b[2J.log")  # read, it would block verify
    try:
        verify_bundle(result.run_dir)
    except BundleInvalid as exc:
        assert "not a regular file" in str(exc)
    else:
        raise AssertionError("a bundle holding a FIFO verified")
    proc = subprocess.run([sys.executable, "-m", "cto_harness", "verify", str(result.run_dir)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "\x1b" not in proc.stderr and "x\u241b[2J.log" in proc.stderr
