"""The tree layer: no link followed, no special file opened, any depth, a budget before content,
bytes names; and the verification copy made from the snapshot, never written through a link."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from conftest import CaseFactory
from cto_harness.core.run import execute_run
from cto_harness.tree import (
    ENTRY_COST,
    FIFO,
    FILE,
    LINK,
    PATH_MAX,
    SOCKET,
    Budget,
    BudgetExceeded,
    Cursor,
    Planned,
    TreeChanged,
    materialize,
    open_regular,
    read_file,
    remove_tree,
    tree_order,
    walk,
)


def _deep(root: Path, depth: int, name: bytes = b"d") -> bytes:
    """A chain of `depth` folders holding one file, made with descriptors (no long path)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open(b"leaf.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"deep = True\n")
        os.close(leaf)
    finally:
        os.close(fd)
    return b"/".join([name] * depth) + b"/leaf.py"


def test_links_are_listed_never_followed_and_special_files_never_opened(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "dirlink")
    os.symlink(outside / "secret.txt", root / "filelink")
    os.mkfifo(root / "pipe")  # opened, it would block this test forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    (root / "plain.txt").write_text("plain")
    found = {node.rel: node for node, _fd in walk(root)}
    assert set(found) == {b"dirlink", b"filelink", b"pipe", b"sock", b"plain.txt"}
    assert found[b"dirlink"].kind == LINK and found[b"dirlink"].target == os.fsencode(outside)
    assert (found[b"pipe"].kind, found[b"sock"].kind) == (FIFO, SOCKET)
    server.close()


def test_open_regular_refuses_what_was_swapped_after_listing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    for node, dir_fd in walk(tmp_path):
        (tmp_path / "a.txt").unlink()
        os.symlink("/etc/passwd", tmp_path / "a.txt")
        with pytest.raises(TreeChanged):
            open_regular(dir_fd, node)
    (tmp_path / "a.txt").unlink()
    (tmp_path / "a.txt").write_text("b")
    for node, dir_fd in walk(tmp_path):
        (tmp_path / "a.txt").unlink()
        os.mkfifo(tmp_path / "a.txt")  # O_NONBLOCK: the open cannot hang, fstat refuses it
        with pytest.raises(TreeChanged):
            open_regular(dir_fd, node)


def test_depth_past_path_max_is_walked_copied_and_removed(tmp_path: Path) -> None:
    root = tmp_path / "deep"
    root.mkdir()
    rel = _deep(root, 2200)
    assert len(rel) > PATH_MAX
    found = {node.rel: node for node, _fd in walk(root)}
    assert found[rel].kind == FILE and found[rel].size == len(b"deep = True\n")
    plan = [Planned(r, n.kind) if n.kind != FILE else
            Planned(r, FILE, content="x", size=n.size) for r, n in found.items()]
    made = materialize(tmp_path / "copy", plan,
                       lambda item, sink: sink(b"deep = True\n"), byte_limit=1 << 20)
    assert made.files == 1 and made.directories == 2200
    assert read_file(tmp_path / "copy", rel, 100) == b"deep = True\n"
    assert remove_tree(tmp_path / "copy") == []
    assert remove_tree(root) == []
    assert not root.exists() and not (tmp_path / "copy").exists()


def test_the_budget_counts_every_hard_link_before_reading_anything(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"\0" * 4096)
    for i in range(9):
        os.link(tmp_path / "big.bin", tmp_path / f"link{i}.bin")
    budget = Budget(10 * (4096 + ENTRY_COST))
    assert len(list(walk(tmp_path, budget=budget))) == 10
    assert budget.used == 10 * (4096 + ENTRY_COST)
    with pytest.raises(BudgetExceeded):
        list(walk(tmp_path, budget=Budget(9 * 4096)))
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as handle:
        handle.truncate(1 << 40)  # a terabyte of holes: charged by size, never read
    with pytest.raises(BudgetExceeded):
        list(walk(tmp_path, budget=Budget(1 << 30)))


def test_the_budget_charges_the_paths_a_deep_tree_makes_the_harness_hold(tmp_path: Path) -> None:
    # Each level's path is longer than the last: 300 folders of 200-byte names hold 9 MB of
    # paths for 300 names (quadratic in the depth). Charged by names alone, a 1 GiB limit let
    # 131,072 one-byte levels through: 16 GiB of paths, for 1 GiB of folders.
    root = tmp_path / "deep"
    root.mkdir()
    _deep(root, 300, b"d" * 200)
    budget = Budget(1 << 30)
    paths = sum(len(node.rel) for node, _fd in walk(root, budget=budget))
    assert paths > 2 * 300 * (ENTRY_COST + 4096)  # more than the names (and folder sizes) cost
    assert budget.used >= paths
    with pytest.raises(BudgetExceeded):
        list(walk(root, budget=Budget(paths // 2)))
    assert remove_tree(root) == []


def test_tree_order_is_the_order_of_path_components() -> None:
    rels = [b"a", b"a/b", b"a-b", b"a/b/c", b"ab", b"a\xff", b"a.b/c", b"a/\x01", b"b", b"a/b-c"]
    assert sorted(rels, key=tree_order) == sorted(rels, key=lambda r: r.split(b"/"))


def test_cursor_up_refuses_a_folder_moved_meanwhile(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    with Cursor(tmp_path) as cursor:
        cursor.down(b"a")
        cursor.down(b"b")
        os.rename(tmp_path / "a" / "b", tmp_path / "elsewhere" / "b")
        with pytest.raises(TreeChanged):
            cursor.up()


class _Signal(BaseException):
    """Stands for a signal's exception, landing right after a close (no real signal can be
    aimed at one bytecode)."""


def test_an_interrupt_inside_a_cursor_step_never_closes_a_descriptor_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closing a number twice in a threaded program can close a descriptor another thread has
    # just been given (a run's log pump, a Ray worker's own); the second close also used to
    # replace the interrupt by `EBADF`, and the interrupted run ended `error`.
    (tmp_path / "a" / "b").mkdir(parents=True)
    real_close = os.close
    armed = [False]

    def close_then_interrupt(fd: int) -> None:
        real_close(fd)  # a second close of the same descriptor fails here: EBADF
        if armed[0]:
            armed[0] = False
            raise _Signal

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    monkeypatch.setattr(os, "close", close_then_interrupt)
    for step in ("down", "up"):
        before = open_fds()
        with pytest.raises(_Signal), Cursor(tmp_path) as cursor:
            cursor.down(b"a")
            armed[0] = True
            cursor.down(b"b") if step == "down" else cursor.up()
        assert cursor.fd == -1 and open_fds() == before, step  # nothing left open either


def test_materialize_never_writes_through_and_drops_special_bits(tmp_path: Path) -> None:
    target = tmp_path / "copy"
    plan = [Planned(b"pkg", "directory"),
            Planned(b"pkg/run.sh", FILE, executable=True, content="x", size=2),
            Planned(b"pkg/data", FILE, content="x", size=2),
            Planned(b"pkg/link", LINK, target=b"/etc/passwd")]
    made = materialize(target, plan, lambda item, sink: sink(b"hi"), byte_limit=100)
    assert (made.files, made.links, made.directories) == (2, 1, 1)
    assert stat.S_IMODE((target / "pkg/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "pkg/data").stat().st_mode) == 0o644
    assert os.readlink(target / "pkg/link") == "/etc/passwd"
    with pytest.raises(FileExistsError):  # never into a folder that already exists
        materialize(target, plan, lambda item, sink: sink(b"hi"), byte_limit=100)
    with pytest.raises(BudgetExceeded):
        materialize(tmp_path / "small", plan, lambda item, sink: sink(b"hi"), byte_limit=3)


def test_read_file_and_remove_tree_never_follow_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    os.symlink(outside, root / "sub" / "escape")
    os.symlink(outside / "keep.txt", root / "file")
    assert read_file(root, "sub/escape/keep.txt", 100) is None
    assert read_file(root, "file", 100) is None
    os.mkfifo(root / "fifo")
    assert read_file(root, "fifo", 100) is None
    assert remove_tree(root) == []
    assert (outside / "keep.txt").read_text() == "keep"


# --- the verification copy through a real run -------------------------------------------------

def test_a_tests_folder_swapped_for_a_link_is_never_written_through(
        case_factory: CaseFactory, tmp_path: Path) -> None:
    target = tmp_path / "target-repo"
    target.mkdir()
    (target / "test_text.py").write_text("# the target's own file\n")
    script = ("import os, shutil\n"
              "shutil.rmtree('tests')\n"
              f"os.symlink({str(target)!r}, 'tests')\n")
    root = case_factory("tests-link", files={"attack.py": script}, toml_edit=lambda t: t.replace(
        'overlay = "fake/solution"', 'overlay = "fake/solution"\nscript = "attack.py"'))
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    report = execute_run("tests-link", harness_root=root).report
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert report.verdict == "fail"
    tests = next(c for c in report.changed_files if c.path == "tests")
    assert tests.kind == "symlink" and tests.allowed is False
    assert "a link or file where the fixture has a directory" in tests.notes
    # Verification ran the pristine tests, in a real folder, and they passed.
    assert report.verification.status == "passed"
    assert "tests" in report.verification.restored_files
