"""File-system helpers: atomic writes, digests and paths checked against their root."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cto_harness.errors import UsageError

_CHUNK = 1 << 20


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` so that readers see either the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: Path, value: Any, *, mode: int = 0o644) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n", mode=mode)


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve_within(root: Path, relative: str | Path, *, what: str = "path") -> Path:
    """Resolve `relative` under `root`; refuse absolute paths and anything escaping `root`."""
    rel = Path(relative)
    if rel.is_absolute():
        raise UsageError(f"{what} must be relative, got an absolute path: {relative}")
    root_resolved = root.resolve()
    candidate = (root_resolved / rel).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise UsageError(f"{what} escapes its root {root_resolved}: {relative}")
    return candidate


def tree_files(root: Path) -> list[Path]:
    """Every regular file and symlink below `root` (symlinks are not followed), sorted."""
    found: list[Path] = []
    stack = [root]
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    found.append(Path(entry.path))
    return sorted(found)


def tree_digest(root: Path, *, exclude: frozenset[str] = frozenset()) -> str:
    """A SHA-256 over every path, type, exec bit and content below `root` (symlinks by target).

    Top-level names in `exclude` are skipped without being walked. Files are hashed on a small
    thread pool (hashlib releases the GIL on large buffers and the reads are system calls), in
    sorted order of results, so the digest is the one a sequential walk gives."""
    entries: list[tuple[list[str], str, Path]] = []
    stack = [root]
    while stack:
        current = stack.pop()
        with os.scandir(current) as listing:
            for entry in listing:
                path = Path(entry.path)
                if current == root and entry.name in exclude:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                    continue
                rel = path.relative_to(root).as_posix()
                entries.append((rel.split("/"), rel, path))
    entries.sort(key=lambda item: item[0])
    regular = [path for _parts, _rel, path in entries
               if stat.S_ISREG(path.lstat().st_mode)]
    hashes = dict(zip(regular, sha256_files(regular), strict=True))
    digest = hashlib.sha256()
    for _parts, rel, path in entries:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            line = f"L {rel} {os.readlink(path)}"
        elif path in hashes:
            executable = "x" if st.st_mode & 0o111 else "-"
            line = f"F{executable} {rel} {hashes[path]}"
        else:  # a fifo, socket or device: named, never opened (a fifo would block)
            line = f"S {rel} {stat.S_IFMT(st.st_mode):o}"
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def sha256_files(paths: list[Path]) -> list[str]:
    """`sha256_file` of each path, in order; many files are hashed on a small thread pool."""
    if len(paths) < 64:
        return [sha256_file(p) for p in paths]
    workers = min(4, (os.cpu_count() or 1) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(sha256_file, paths, chunksize=32))
