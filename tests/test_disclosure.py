"""The credential scan of what a provider left: found past the first megabytes, across two
reads, in a name; never through a link, never by opening a FIFO."""

from __future__ import annotations

import os
from pathlib import Path

from cto_harness.engines.disclosure import credential_disclosures, scan_tree

KEY = "sk-ant-api03-disclosure-canary-Q7"


def test_a_value_is_found_wherever_the_provider_put_it_plainly(tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    (root / "deep").mkdir(parents=True)
    # Past the first 8 MiB (the old scan stopped there), and split across the 1 MiB reads.
    (root / "deep" / "padded.log").write_bytes(b"x" * (9 << 20) + KEY.encode())
    (root / "split.bin").write_bytes(b"y" * ((1 << 20) - 5) + KEY.encode())
    (root / f"named-{KEY}").write_text("nothing inside\n")
    (root / "clean.txt").write_text("no key here\n")
    found = scan_tree(root, "workspace", {"ANTHROPIC_API_KEY": KEY.encode()})
    assert sorted(where for _name, where in found) == [
        "workspace/deep/padded.log", f"workspace/named-{KEY}", "workspace/split.bin"]


def test_links_are_not_followed_fifos_not_opened_and_skipped_names_not_read(
    tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text(KEY)
    root = tmp_path / "workspace"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text(KEY)
    (root / "link").symlink_to(outside)
    os.mkfifo(root / "pipe")  # opened, it would block the scan forever
    assert scan_tree(root, "workspace", {"K": KEY.encode()}, frozenset({b".git"})) == []


def test_each_disclosure_is_a_named_forbidden_action(tmp_path: Path) -> None:
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "pull-requests.jsonl").write_text(f'{{"title": "{KEY}"}}\n')
    actions = credential_disclosures(
        {"ANTHROPIC_API_KEY": KEY, "SHORT": "abc"}, ["ANTHROPIC_API_KEY", "SHORT", "UNSET"],
        [(tmp_path / "backend", "backend", frozenset()),
         (tmp_path / "missing", "workspace", frozenset())])
    assert [(a.action, a.detail) for a in actions] == [
        ("credential_disclosed",
         "the value of ANTHROPIC_API_KEY appeared in backend/pull-requests.jsonl")]


def test_a_key_written_everywhere_is_named_in_a_bounded_list(tmp_path: Path) -> None:
    from cto_harness.engines.disclosure import MAX_NAMED

    for i in range(MAX_NAMED + 30):
        (tmp_path / f"f{i}").write_text(KEY)
    actions = credential_disclosures({"K": KEY}, ["K"], [(tmp_path, "workspace", frozenset())])
    assert len(actions) == MAX_NAMED + 1
    assert actions[-1].detail == "and in 30 more places"
