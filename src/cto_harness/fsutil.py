"""File-system helpers: atomic writes, digests and paths checked against their root."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
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
    """A SHA-256 over every path, type, exec bit and content below `root` (symlinks by target)."""
    digest = hashlib.sha256()
    for path in tree_files(root):
        rel = path.relative_to(root).as_posix()
        if rel.split("/", 1)[0] in exclude:
            continue
        st = path.lstat()
        if path.is_symlink():
            entry = f"L {rel} {os.readlink(path)}"
        else:
            executable = "x" if st.st_mode & 0o111 else "-"
            entry = f"F{executable} {rel} {sha256_file(path)}"
        digest.update(entry.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()
