"""File-system helpers: atomic writes, digests and paths checked against their root."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

StrPath = str | os.PathLike[str]
_CHUNK = 1 << 20
# Files at least this large are hashed on their own thread.
_PARALLEL_MIN_BYTES = 4 << 20


class PathEscape(ValueError):
    """A path from input that is absolute or resolves outside the root it must stay in."""


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` so that readers see either the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The name is chosen before anything exists and the descriptor is a file object's from its
    # first instant ("x": O_EXCL, never through a link): an interrupt anywhere here leaves
    # neither a temporary file nor an open descriptor (mkstemp's could leak both).
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: Path, value: Any, *, mode: int = 0o644) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n", mode=mode)


# Deeper than any record the harness or a provider's event log has reason to hold; a deeper
# line is unreadable (every later step may walk a row recursively).
MAX_JSON_DEPTH = 32


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests lists and objects more than `limit` deep (walked
    without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def read_jsonl(path: Path, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The objects of a JSON-lines file, and how many non-blank lines were not one (a missing
    file has none; invalid UTF-8 is replaced): a line that does not parse (bad JSON, a number of
    more digits than Python converts, nesting past the parser's recursion), or nests past
    `MAX_JSON_DEPTH`, is counted, never raised. Provider-written text is read with limits
    through `tree.read_file` first, or made inert by `inert.read_jsonl`. With `limit`, only
    that many non-blank lines are looked at."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], 0
    rows: list[dict[str, Any]] = []
    bad = 0
    seen = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        seen += 1
        if limit is not None and seen > limit:
            break
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(row, dict) and not nested_deeper_than(row, MAX_JSON_DEPTH):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, *, wait: bool = True) -> Iterator[None]:
    """An exclusive `flock` on `lock_file` (created if needed) for the duration of the block.
    The kernel releases it when the descriptor closes, also when the process dies. With
    `wait=False`, a lock someone else holds raises `BlockingIOError` at once. A link there is
    never followed (ELOOP): a lock file planted as a link would have the harness create or open
    a file of the link's choosing."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def sha256_file(path: StrPath) -> str:
    """SHA-256 of a regular file. Anything else raises OSError instead of being read: a FIFO
    (opened non-blocking, so it cannot hang) or a device swapped in for a file."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0) as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_regular(path: StrPath, cap: int, *, follow_link: bool = False) -> bytes:
    """The bytes of a regular file of at most `cap` bytes, for input someone else wrote (a bundle,
    a suite's key). OSError otherwise, before anything is read: a link (not followed unless
    `follow_link`), a FIFO (opened non-blocking, so it cannot hang), a device, or a file over
    `cap`."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_link else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    with open(fd, "rb", buffering=0) as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > cap:
            raise OSError(errno.EFBIG, f"larger than {cap} bytes", str(path))
        data = handle.read(cap + 1)
    if len(data) > cap:  # grew after the check
        raise OSError(errno.EFBIG, f"larger than {cap} bytes", str(path))
    return data


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve_within(root: Path, relative: str | Path, *, what: str = "path") -> Path:
    """Resolve `relative` under `root`; refuse absolute paths and anything escaping `root`."""
    rel = Path(relative)
    if rel.is_absolute():
        raise PathEscape(f"{what} must be relative, got an absolute path: {relative}")
    root_resolved = root.resolve()
    try:
        candidate = (root_resolved / rel).resolve()
    except RuntimeError:  # a link loop (Python < 3.13): whoever planted it gets a refusal
        raise PathEscape(f"{what} is a loop of links: {relative}") from None
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise PathEscape(f"{what} escapes its root {root_resolved}: {relative}")
    return candidate



def tree_digest(root: Path, *, exclude: frozenset[str] = frozenset()) -> str:
    """A SHA-256 over every path, type, exec bit and content below `root` (symlinks by target).

    Top-level names in `exclude` are skipped without being walked; large files are hashed on
    background threads (`sha256_files`); the digest is the one a sequential walk gives. Paths
    stay plain strings: an npm install is tens of thousands of files, hashed on every run."""
    entries: list[tuple[list[str], str, str]] = []  # (relative parts, relative path, path)
    stack = [(os.fspath(root), "")]
    while stack:
        current, prefix = stack.pop()
        with os.scandir(current) as listing:
            for entry in listing:
                if not prefix and entry.name in exclude:
                    continue
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, rel + "/"))
                    continue
                entries.append((rel.split("/"), rel, entry.path))
    entries.sort(key=lambda item: item[0])
    stats = [os.lstat(path) for _parts, _rel, path in entries]
    regular = [(path, st.st_size) for (_p, _r, path), st in zip(entries, stats, strict=True)
               if stat.S_ISREG(st.st_mode)]
    hashes = dict(zip([p for p, _ in regular],
                      sha256_files([p for p, _ in regular], [n for _, n in regular]), strict=True))
    digest = hashlib.sha256()
    for (_parts, rel, path), st in zip(entries, stats, strict=True):
        if stat.S_ISLNK(st.st_mode):
            line = f"L {rel} {os.readlink(path)}"
        elif path in hashes:
            executable = "x" if st.st_mode & 0o111 else "-"
            line = f"F{executable} {rel} {hashes[path]}"
        else:  # a fifo, socket or device: named, never opened (a fifo would block)
            line = f"S {rel} {stat.S_IFMT(st.st_mode):o}"
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def sha256_files(paths: Sequence[StrPath], sizes: list[int] | None = None) -> list[str]:
    """`sha256_file` of each path, in order. Large files are hashed on background threads while
    this thread hashes the small ones: hashlib releases the GIL on large buffers, while threads
    on many small files only fight over it."""
    if sizes is None:
        sizes = [os.stat(p).st_size for p in paths]
    big = [i for i, size in enumerate(sizes) if size >= _PARALLEL_MIN_BYTES]
    if not big:
        return [sha256_file(p) for p in paths]
    results: list[str] = [""] * len(paths)
    with ThreadPoolExecutor(max_workers=max(1, min(len(big), os.cpu_count() or 1))) as pool:
        futures = {i: pool.submit(sha256_file, paths[i]) for i in big}
        for i, path in enumerate(paths):
            if i not in futures:
                results[i] = sha256_file(path)
        for i, future in futures.items():
            results[i] = future.result()
    return results
