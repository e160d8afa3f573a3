"""Bundles travel between machines as tars: a round trip keeps bytes, modes and times; a hostile
archive (absolute or `..` names, links, devices, fifos, duplicates, truncation) is refused and
leaves nothing behind, and nothing is ever written outside the new folder."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cto_harness.core.executor import Finished, Job, SuitePlan
from cto_harness.executors.archive import (
    ArchiveRejected,
    check_name,
    pack_tree,
    unpack_into_new,
)


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


def test_round_trip_keeps_bytes_modes_and_times(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "backend").mkdir(parents=True)
    (src / "report.json").write_bytes(b'{"a": 1}\n')
    (src / "backend" / "tool").write_bytes(b"#!/bin/sh\n")
    (src / "backend" / "tool").chmod(0o755)
    os.utime(src / "report.json", ns=(1_700_000_000_123_456_000, 1_700_000_000_123_456_000))
    out = tmp_path / "out"
    out.mkdir()
    target = unpack_into_new(pack_tree(src), out)
    assert target.parent == out
    assert (target / "report.json").read_bytes() == b'{"a": 1}\n'
    assert (target / "backend" / "tool").stat().st_mode & 0o777 == 0o755
    assert (target / "report.json").stat().st_mode & 0o777 == 0o644
    # Sub-second times survive (verify compares them with the run's start).
    assert abs((target / "report.json").stat().st_mtime_ns - 1_700_000_000_123_456_000) < 10_000


def test_pack_refuses_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "link").symlink_to("/etc/passwd")
    with pytest.raises(ArchiveRejected, match="symlink"):
        pack_tree(src)
    with pytest.raises(ArchiveRejected):
        pack_tree(src, ["link"])


@pytest.mark.parametrize("name", ["/etc/evil", "../evil", "a/../../evil", "a/./b", "a//b", "",
                                  "..", "a/\0b"])
def test_names_that_are_not_plain_relative_paths_are_refused(name: str) -> None:
    with pytest.raises(ArchiveRejected):
        check_name(name)


def _with_mtime(mtime: str) -> bytes:
    info, data = _file("report.json", b"{}")
    info.pax_headers = {"mtime": mtime}
    return _tar((info, data))


def _sparse(tar_format: str, tmp: Path) -> bytes:
    """A 64 MiB file that is one hole, as GNU tar stores it: a few KiB that expand."""
    (tmp / "src").mkdir()
    with open(tmp / "src" / "trace.jsonl", "wb") as handle:
        handle.truncate(64 << 20)
        handle.write(b"x")
    return subprocess.run(["tar", "--sparse", f"--format={tar_format}", "-C", str(tmp / "src"),
                           "-cf", "-", "trace.jsonl"], capture_output=True, check=True).stdout


HOSTILE: dict[str, Callable[[], bytes]] = {
    "mtime inf": lambda: _with_mtime("inf"),
    "mtime past any clock": lambda: _with_mtime("1e30"),
    "absolute": lambda: _tar(_file("/tmp/cto-evil-absolute")),
    "dotdot": lambda: _tar(_file("../cto-evil-dotdot")),
    "symlink then write through it": lambda: _tar(
        _special("escape", tarfile.SYMTYPE, ".."), _file("escape/cto-evil-link")),
    "hard link": lambda: _tar(_special("h", tarfile.LNKTYPE, "/etc/passwd")),
    "char device": lambda: _tar(_special("dev", tarfile.CHRTYPE)),
    "fifo": lambda: _tar(_special("fifo", tarfile.FIFOTYPE)),
    "duplicate name": lambda: _tar(_file("report.json"), _file("report.json", b"second")),
    "file over a directory": lambda: _tar(_file("a/b"), _file("a")),
    "truncated": lambda: _tar(_file("big", b"y" * 4096))[:1024],
    "not a tar": lambda: b"\x1f\x8b not a tar at all" * 50,
}


@pytest.mark.parametrize("tar_format", ["gnu", "pax"])
def test_a_sparse_member_is_refused_before_it_expands(tar_format: str, tmp_path: Path) -> None:
    if shutil.which("tar") is None:
        pytest.skip("no tar program to write a sparse archive with")
    data = _sparse(tar_format, tmp_path)
    assert len(data) < 64 << 10
    parent = tmp_path / "suite" / "runs"
    parent.mkdir(parents=True)
    with pytest.raises(ArchiveRejected, match="sparse"):
        unpack_into_new(data, parent)
    assert list(parent.iterdir()) == []


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_leave_nothing(kind: str, tmp_path: Path) -> None:
    parent = tmp_path / "suite" / "runs"
    parent.mkdir(parents=True)
    with pytest.raises(ArchiveRejected):
        unpack_into_new(HOSTILE[kind](), parent)
    assert list(parent.iterdir()) == [], "a rejected archive leaves no folder behind"
    outside = {p.name for p in tmp_path.rglob("*")} | {p.name for p in Path("/tmp").iterdir()}
    assert not any(n.startswith("cto-evil") for n in outside)


# --- what a node answers -------------------------------------------------------------------


class _Recorded:
    """Suite hooks that keep what the executor reports."""

    def __init__(self, suite_dir: Path) -> None:
        self.suite_dir = suite_dir
        self.finished_with: list[Finished] = []

    def place(self, job: Job) -> Path:
        job.run_dir = self.suite_dir / "runs" / job.case_id / "r001"
        job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        return job.run_dir

    def started(self, job: Job) -> None: ...

    def live(self, running: object) -> None: ...

    def note(self, text: str) -> None: ...

    def finished(self, job: Job, done: Finished) -> None:
        self.finished_with.append(done)


@pytest.mark.parametrize("answer", [
    ["not", "a", "result"],
    {"ok": False, "blocker": "node_error", "message": b"\xff", "node": "a string"},
    {"ok": True, "archive": b"", "public_key": b"x", "timing": "not a mapping"},
    {"ok": True, "archive": b"", "public_key": b"x", "node": {"node_id": ["x"] * 1000}},
])
def test_a_nodes_answer_of_any_shape_is_a_named_refusal(tmp_path: Path, answer: object) -> None:
    # A misbehaving node's answer (a list, bytes where text goes, a timing that is no mapping)
    # raised out of the driver's loop and ended the whole suite with a traceback.
    import types

    from cto_harness.executors.ray_executor import RayExecutor, _Attempt

    pytest.importorskip("ray")
    errors = types.SimpleNamespace(**{name: type(name, (Exception,), {}) for name in (
        "TaskCancelledError", "NodeDiedError", "WorkerCrashedError", "ObjectLostError",
        "LocalRayletDiedError", "RayError")})
    executor = RayExecutor(retries=0)
    executor.ray = types.SimpleNamespace(exceptions=errors, get=lambda ref: answer)
    hooks = _Recorded(tmp_path / "suite")
    job = Job("r1-string-slugify", 1)
    hooks.place(job)
    plan = SuitePlan(engine="fake", harness_root=tmp_path, suite_dir=hooks.suite_dir, jobs=1,
                     case_ids=("r1-string-slugify",))
    executor._settle("ref", _Attempt(job, 1, 0.0), plan, hooks, False)
    (done,) = hooks.finished_with
    assert done.run_dir is None and done.blocker is not None
    node = done.extra.get("node")
    assert node is None or (isinstance(node, dict) and len(str(node)) < 4096)
