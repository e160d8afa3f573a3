"""Snapshot and diff: every kind of change is seen, and the patch reproduces it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cto_harness.workspace import Snapshot, copy_tree, init_workspace_repo, split_changes


def _fixture(root: Path) -> Path:
    root.mkdir()
    (root / "keep.txt").write_text("keep\n")
    (root / "edit.txt").write_text("old\n")
    (root / "gone.txt").write_text("bye\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "data.bin").write_bytes(bytes(range(256)))
    (root / ".gitignore").write_text("ignored.txt\n")
    os.symlink("keep.txt", root / "link")
    return root


def test_every_kind_of_change_is_classified_and_the_patch_applies(tmp_path: Path) -> None:
    pristine = _fixture(tmp_path / "pristine")
    workspace = tmp_path / "ws"
    copy_tree(pristine, workspace)
    init_workspace_repo(workspace, tmp_path / "remote.git", tmp_path / "home")
    snap = Snapshot(workspace, tmp_path / "snap.git", tmp_path / "home")
    snap.take_before()

    (workspace / "edit.txt").write_text("new\n")
    (workspace / "gone.txt").unlink()
    (workspace / "added.txt").write_text("hi\n")
    (workspace / "run.sh").chmod(0o755)
    (workspace / "data.bin").write_bytes(bytes(reversed(range(256))))
    (workspace / "link").unlink()
    os.symlink("edit.txt", workspace / "link")
    (workspace / "ignored.txt").write_text("hidden by .gitignore, still a change\n")
    (workspace / ".case").mkdir()
    (workspace / ".case" / "log.jsonl").write_text("{}\n")
    # A commit by the agent must not hide anything.
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b",
           "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"}
    subprocess.run(["git", "add", "-A"], cwd=workspace, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "agent"], cwd=workspace, check=True, env=env)

    snap.take_after()
    source, bookkeeping = split_changes(snap.changes(), ["*.txt", "link", "data.bin"])
    kinds = {c.path: c.change for c in source}
    assert kinds == {
        "added.txt": "added", "edit.txt": "modified", "gone.txt": "deleted",
        "run.sh": "mode_changed", "data.bin": "modified", "link": "modified",
        "ignored.txt": "added",
    }
    assert {c.path for c in source if c.symlink} == {"link"}
    assert {c.path: c.allowed for c in source}["run.sh"] is False
    assert [c.path for c in bookkeeping] == [".case/log.jsonl"]

    target = tmp_path / "apply"
    shutil.copytree(pristine, target, symlinks=True)
    patch = tmp_path / "p.diff"
    patch.write_bytes(snap.patch())
    assert b".case" not in patch.read_bytes()
    subprocess.run(["git", "apply", str(patch)], cwd=target, check=True)
    for name in ("edit.txt", "added.txt", "data.bin", "ignored.txt"):
        assert (target / name).read_bytes() == (workspace / name).read_bytes()
    assert not (target / "gone.txt").exists()
    assert os.readlink(target / "link") == "edit.txt"
    assert os.access(target / "run.sh", os.X_OK)
