"""Reading report.md in tests: its fenced blocks apart, and its links checked against the bundle."""

from __future__ import annotations

import re
from pathlib import Path

from cto_harness.evidence.layout import bundle_files

LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


def split_fences(text: str) -> tuple[str, list[tuple[str, str]]]:
    outside, fences, lines = [], [], text.splitlines()
    i = 0
    while i < len(lines):
        opened = re.fullmatch(r"(`{3,})\w*", lines[i])
        if opened is None:
            outside.append(lines[i])
            i += 1
            continue
        fence, inner, i = opened.group(1), [], i + 1
        while i < len(lines) and lines[i] != fence:
            inner.append(lines[i])
            i += 1
        fences.append((fence, "\n".join(inner)))
        i += 1
    return "\n".join(outside), fences


def assert_links_resolve(run_dir: Path) -> None:
    """Every link of the bundle's report.md (and of its baseline's) names one of its files, by a
    relative path, and every file of the bundle is linked (the baseline's from its own page)."""
    text = (run_dir / "report.md").read_text()
    links = LINK.findall(split_fences(text)[0])
    for label, target in links:
        assert label == target and not target.startswith("/") and ".." not in target
        assert (run_dir / target).is_file(), f"dangling link in {run_dir}/report.md: {target}"
    own = {f for f in bundle_files(run_dir) if not f.startswith("baseline/")}
    assert own - {t for _l, t in links} <= {"report.md"}
    if (run_dir / "baseline").is_dir():
        assert "baseline/report.md" in {t for _l, t in links}
        assert_links_resolve(run_dir / "baseline")
