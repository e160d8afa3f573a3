"""Folders as bytes between machines: pack a tree of regular files, unpack a hostile archive.

The archive is a plain (uncompressed: no decompression bomb) POSIX tar that holds directories and
regular files only. Packing refuses anything else (a link or a device is not evidence).

Unpacking treats the archive as hostile and is safe by construction rather than by a list of
known tricks: it writes only into a directory it has just created itself, walks every path one
component at a time through directory descriptors opened with `O_NOFOLLOW`, creates files with
`O_EXCL` (a name never lands twice, never on something that was there), and never creates a link,
a device or a fifo. A member name is a sequence of plain components: no absolute path, no `.`,
`..` or empty component, no NUL. Sizes and counts are bounded. Modes are reduced to 0644/0755;
modification times are kept (`verify` compares them with the run's start).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

MAX_MEMBERS = 100_000
MAX_NAME_BYTES = 4096
MAX_DEPTH = 64
# The tar itself bounds what it can unpack (no compression), but a limit keeps memory sane.
MAX_ARCHIVE_BYTES = 1 << 30


class ArchiveRejected(Exception):
    """The archive (or the tree to pack) holds something that must not cross machines."""


def pack_tree(root: Path, files: Iterable[str] | None = None) -> bytes:
    """A tar of `files` (paths relative to `root`; default: every file below it), regular files
    only, in sorted order. A symlink, device, fifo or socket among them raises ArchiveRejected."""
    root = Path(root)
    names = sorted(files) if files is not None else sorted(_walk(root))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for rel in names:
            parts = check_name(rel)
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in dirs:
                    dirs.add(folder)
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            path = root.joinpath(*parts)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:  # ELOOP: a symlink
                raise ArchiveRejected(f"cannot pack {rel}: {exc.strerror}") from exc
            with os.fdopen(fd, "rb") as handle:
                st = os.fstat(handle.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise ArchiveRejected(f"not a regular file: {rel}")
                info = tarfile.TarInfo("/".join(parts))
                info.size = st.st_size
                info.mtime = st.st_mtime_ns / 1e9
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                tar.addfile(info, handle)
    return buffer.getvalue()


def _walk(root: Path) -> Iterable[str]:
    for folder, subdirs, filenames in os.walk(root):
        for name in subdirs + filenames:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                raise ArchiveRejected(f"cannot pack a symlink: {os.path.relpath(path, root)}")
        yield from (os.path.relpath(os.path.join(folder, name), root) for name in filenames)


def check_name(name: str) -> list[str]:
    """The components of a member name, or ArchiveRejected when it is not a plain relative path."""
    if not name or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES or "\0" in name:
        raise ArchiveRejected(f"bad member name {name[:80]!r}")
    if name.startswith("/"):
        raise ArchiveRejected(f"absolute member name {name[:80]!r}")
    parts = name.rstrip("/").split("/")
    if len(parts) > MAX_DEPTH or any(p in ("", ".", "..") for p in parts):
        raise ArchiveRejected(f"member name is not a plain relative path: {name[:80]!r}")
    return parts


def unpack_into_new(data: bytes, parent: Path, prefix: str = ".incoming-") -> Path:
    """Unpack `data` into a new private directory under `parent`; returns it. On any problem the
    directory is removed and ArchiveRejected raised: nothing half-unpacked is left behind."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ArchiveRejected(f"archive of {len(data)} bytes is over the {MAX_ARCHIVE_BYTES} limit")
    target = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        _unpack(data, target)
    except ArchiveRejected:
        remove_plain_tree(target)
        raise
    except (tarfile.TarError, OSError, ValueError, EOFError, ArithmeticError) as exc:
        remove_plain_tree(target)
        raise ArchiveRejected(f"unreadable archive: {type(exc).__name__}: {exc}") from exc
    os.chmod(target, 0o755)
    return target


def _unpack(data: bytes, target: Path) -> None:
    root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise ArchiveRejected(f"more than {MAX_MEMBERS} members")
                parts = check_name(member.name)
                if member.isdir():
                    _open_dirs(root_fd, parts, create=True, close_last=True)
                elif member.issparse():
                    # Its size is the expanded one: a few KiB of archive could write GiBs.
                    raise ArchiveRejected(f"member {member.name[:80]!r} is a sparse file")
                elif member.isreg():
                    _write_file(root_fd, parts, tar, member)
                else:
                    raise ArchiveRejected(
                        f"member {member.name[:80]!r} is not a file or directory (type "
                        f"{member.type!r}): links, devices and fifos are refused")
    finally:
        os.close(root_fd)


def _open_dirs(root_fd: int, parts: list[str], *, create: bool, close_last: bool) -> int:
    """Walk (creating) the directories `parts` below root_fd without following any link; returns
    the last one's descriptor (closed and -1 when close_last)."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise
    if close_last:
        os.close(fd)
        return -1
    return fd


def _write_file(root_fd: int, parts: list[str], tar: tarfile.TarFile,
                member: tarfile.TarInfo) -> None:
    folder_fd = _open_dirs(root_fd, parts[:-1], create=True, close_last=False)
    try:
        mode = 0o755 if member.mode & 0o111 else 0o644
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode,
                     dir_fd=folder_fd)
    finally:
        os.close(folder_fd)
    with os.fdopen(fd, "wb") as out:
        source = tar.extractfile(member)
        if source is None:
            raise ArchiveRejected(f"member {member.name[:80]!r} has no data")
        remaining = member.size
        while remaining:
            chunk = source.read(min(remaining, 1 << 20))
            if not chunk:
                raise ArchiveRejected(f"member {member.name[:80]!r} is truncated")
            out.write(chunk)
            remaining -= len(chunk)
        out.flush()
        os.fchmod(out.fileno(), mode)
        if not 0 <= member.mtime < 1 << 33:  # inf, NaN, 1e30: no time of any bundle
            raise ArchiveRejected(f"member {member.name[:80]!r} has no usable time")
        mtime_ns = int(member.mtime * 1e9)
        os.utime(out.fileno(), ns=(mtime_ns, mtime_ns))


def remove_plain_tree(path: Path) -> None:
    """Remove a tree this module created (directories and regular files, no links followed)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
