"""Snapshot and diff: every kind of change is seen, and the patch reproduces it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import cto_harness.core.workspace as workspace_module
from cto_harness.core.workspace import (
    LINK_OUT_NOTE,
    Snapshot,
    copy_tree,
    init_workspace_repo,
    split_changes,
)


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
    source, bookkeeping = split_changes(snap.changes(), ["*.txt", "link", "data.bin"],
                                        bookkeeping_dirs=(".case",))
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
    patch.write_bytes(snap.patch(bookkeeping_dirs=(".case",)))
    assert b".case" not in patch.read_bytes()
    subprocess.run(["git", "apply", str(patch)], cwd=target, check=True)
    for name in ("edit.txt", "added.txt", "data.bin", "ignored.txt"):
        assert (target / name).read_bytes() == (workspace / name).read_bytes()
    assert not (target / "gone.txt").exists()
    assert os.readlink(target / "link") == "edit.txt"
    assert os.access(target / "run.sh", os.X_OK)


def _snapshot(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, Snapshot]:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    for rel, data in files.items():
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_bytes(data)
    snap = Snapshot(workspace, tmp_path / "snap.git", tmp_path / "home")
    snap.take_before()
    return workspace, snap


def test_the_snapshot_digest_is_the_tree_digest(tmp_path: Path) -> None:
    from cto_harness.fsutil import tree_digest

    workspace, snap = _snapshot(tmp_path, {
        "a.txt": b"a\n", "dir/b.bin": bytes(range(256)) * 300, "run.sh": b"#!/bin/sh\n",
        "sub/.git/config": b"[core]\n", ".git/HEAD": b"ref: refs/heads/main\n",
    })
    (workspace / "run.sh").chmod(0o755)
    os.symlink("a.txt", workspace / "link")
    snap.take_after()
    assert snap.digest() == tree_digest(workspace, exclude=frozenset({".git"}))
    # A nested .git is in the digest, the change list and the patch like any folder; only the
    # workspace's own top-level .git is left out.
    (workspace / "sub/.git/config").write_text("changed\n")
    (workspace / ".git/HEAD").write_text("ref: refs/heads/other\n")
    snap.take_after()
    changed = {c.path: (c.change, c.notes) for c in snap.changes()}
    assert set(changed) == {"sub/.git/config", "link", "run.sh"}
    assert changed["sub/.git/config"][0] == "modified"
    assert any("nested .git" in note for note in changed["sub/.git/config"][1])
    assert b"sub/.git/config" in snap.patch()
    assert snap.digest() == tree_digest(workspace, exclude=frozenset({".git"}))


def test_a_same_size_edit_with_its_mtime_put_back_is_still_seen(tmp_path: Path) -> None:
    """The stat cache must not hide an edit made in the same clock tick, or disguised."""
    workspace, snap = _snapshot(tmp_path, {"x.py": b"value = 1\n", "y.py": b"value = 2\n"})
    before = (workspace / "x.py").stat()
    (workspace / "x.py").write_bytes(b"value = 9\n")  # same size, at once
    os.utime(workspace / "x.py", ns=(before.st_atime_ns, before.st_mtime_ns))
    snap.take_after()
    assert [(c.path, c.change) for c in snap.changes()] == [("x.py", "modified")]
    from cto_harness.fsutil import tree_digest

    assert snap.digest() == tree_digest(workspace, exclude=frozenset({".git"}))


def test_odd_file_names_and_special_files(tmp_path: Path) -> None:
    names = ['quote"d.txt', "back\\slash.txt", "new\nline.txt", "sp ace.txt", "ünï.txt",
             '"lead.txt']
    workspace, snap = _snapshot(tmp_path, {name: b"0\n" for name in names})
    raw = os.fsencode(workspace) + b"/latin1-\xe9.txt"
    with open(raw, "wb") as handle:
        handle.write(b"x\n")
    os.mkfifo(workspace / "pipe")  # never opened: it would block
    for name in names:
        (workspace / name).write_text("1\n")
    snap.take_after()
    changed = {c.path: (c.change, c.kind) for c in snap.changes()}
    shown = {'quote"d.txt': 'quote"d.txt', "back\\slash.txt": "back\\slash.txt",
             "new\nline.txt": "new\u2424line.txt", "sp ace.txt": "sp ace.txt",
             "ünï.txt": "ünï.txt", '"lead.txt': '"lead.txt'}
    assert changed == {**{shown[n]: ("modified", "file") for n in names},
                       "latin1-\u27e80xE9\u27e9.txt": ("added", "file"),
                       "pipe": ("added", "fifo")}
    notes = {c.path: c.notes for c in snap.changes()}
    assert any("not UTF-8" in n for n in notes["latin1-\u27e80xE9\u27e9.txt"])
    assert any("never opened" in n for n in notes["pipe"])
    patch = snap.patch()
    assert patch.startswith(b"# cto-harness: pipe is a fifo")
    assert b"latin1-\\351.txt" in patch  # git's own quoting of the raw byte


def test_special_and_disallowed_changes_are_never_allowed_by_globs(tmp_path: Path) -> None:
    workspace, snap = _snapshot(tmp_path, {"tests/test_a.py": b"x = 1\n", "src/a.py": b"a\n"})
    os.mkfifo(workspace / "src" / "pipe")
    shutil.rmtree(workspace / "tests")
    os.symlink("/etc", workspace / "tests")
    os.symlink("/etc/passwd", workspace / "src" / "b.py")
    (workspace / ".case").mkdir()
    os.symlink("/etc/shadow", workspace / ".case" / "evil")
    (workspace / ".case" / "log.jsonl").write_text("{}\n")
    snap.take_after()
    source, bookkeeping = split_changes(snap.changes(), ["**"], [".case"],
                                        verification_files=["tests/**", "src/b.py"])
    allowed = {c.path: c.allowed for c in source}
    assert allowed == {"src/pipe": False, "tests": False, "tests/test_a.py": True,
                       "src/b.py": False, ".case/evil": False}
    assert [c.path for c in bookkeeping] == [".case/log.jsonl"]


def test_a_link_that_leads_out_of_the_workspace_is_never_allowed(tmp_path: Path) -> None:
    # Resolved as the kernel resolves it, through the tree's other links: `m` climbs out only
    # because `l` (inside on its own) goes up two folders first.
    workspace, snap = _snapshot(tmp_path, {"pkg/mod.py": b"x = 1\n", "a/b/keep.txt": b"k\n"})
    # A maze: each of a chain of links names a long path that comes back where it started, so
    # resolving one walked ~56,000 components (338 s of harness CPU for 1,000 such links). Past
    # 256 components a link counts as leaving, as past 40 links.
    maze = "x/" * 100 + "../" * 100
    links = {
        "pkg/inside": "mod.py", "pkg/up_and_back": "../pkg/mod.py", "a/b/l": "../../pkg",
        "pkg/absolute": "/etc/passwd", "pkg/up": "../../x", "a/b/m": "l/../../..",
        "pkg/missing_then_up": "nothere/../../..", "pkg/loop1": "loop2", "pkg/loop2": "loop1",
        "pkg/maze0": maze + "maze1", "pkg/maze1": maze + "mod.py",
    }
    for rel, target in links.items():
        os.symlink(target, workspace / rel)
    snap.take_after()
    source, _ = split_changes(snap.changes(), ["**"])
    leads_out = {c.path for c in source if LINK_OUT_NOTE in c.notes}
    assert leads_out == {"pkg/absolute", "pkg/up", "a/b/m", "pkg/missing_then_up",
                         "pkg/loop1", "pkg/loop2", "pkg/maze0"}
    assert all(not c.allowed for c in source if c.path in leads_out)
    assert all(c.allowed for c in source if c.path not in leads_out)


def test_a_file_past_the_text_limit_is_a_binary_patch_named_by_its_path_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # To diff text git holds ~43 bytes a line: one 512 MiB file of two-byte lines, ~11 GiB.
    monkeypatch.setattr(workspace_module, "TEXT_DIFF_MAX", 1000)
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    (pristine / "grow.txt").write_text("old\n")
    workspace = tmp_path / "ws"
    copy_tree(pristine, workspace)
    snap = Snapshot(workspace, tmp_path / "snap.git", tmp_path / "home")
    snap.take_before()
    big = [b"grow.txt", b"b*", b'a "q" [x] \\ \xff?.txt', b"sub dir/long"]
    small = [b"bx.txt", b'a "q" x \\ \xffz.txt', b"sub dir/short"]
    os.mkdir(workspace / "sub dir")
    for name in big:
        (workspace / os.fsdecode(name)).write_bytes(b"a\n" * 1000)
    for name in small:
        (workspace / os.fsdecode(name)).write_bytes(b"small\n")
    snap.take_after()
    patch = snap.patch()
    assert patch.count(b"GIT binary patch") == len(big)
    assert patch.count(b"+small\n") == len(small)
    applied = tmp_path / "applied"
    copy_tree(pristine, applied)
    subprocess.run(["git", "apply", "--binary", "-"], cwd=applied, input=patch, check=True)
    for name in big + small:
        assert (applied / os.fsdecode(name)).read_bytes() == \
            (workspace / os.fsdecode(name)).read_bytes()


def test_links_are_resolved_by_their_components_at_any_depth() -> None:
    """Resolving joined and hashed the whole folder path at each step (~0.4 ms a link 3.7 KB
    deep, minutes for a workspace of links); the folders are now numbered once, and a chain
    deeper than Python's stack is walked without recursion."""
    from types import SimpleNamespace
    from typing import Any

    from cto_harness.core.workspace import LINK, LinkMap

    def link(target: bytes) -> Any:
        return SimpleNamespace(kind=LINK, node=SimpleNamespace(target=target))

    deep = b"/".join([b"d"] * 5000)
    entries = {deep + b"/up": link(b"../" * 5000 + b"x"),  # past 256 components: leaves
               deep + b"/near": link(b"../sibling"),
               b"a/b/l": link(b"../../pkg"), b"a/b/m": link(b"l/../../.."),
               b"a/b/n": link(b"gone/../l/mod.py")}
    links = LinkMap(entries)
    assert [links.leaves(rel) for rel in entries] == [True, False, False, True, False]
    assert links.leaves(b"x/y/unlisted") is False  # a folder no link passes: nothing to meet
