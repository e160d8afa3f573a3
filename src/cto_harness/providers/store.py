"""The content-addressed provider store: `$CTO_HARNESS_HOME/providers/<provider>/<sha256>/<binary>`
(the provider and binary names come from its policy: Case's is `providers/case/<sha256>/ca`).

A candidate binary is first copied into a private staging directory and hashed there; that copy
is the one probed and then renamed into place, so the bytes admitted are exactly the bytes that
were hashed and probed (the original may change under us: it is never used again). The stored
binary is mode 0555 and its directory 0555 once the reports are written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cto_harness.errors import Blocked, BlockerCode, HarnessFault
from cto_harness.fsutil import exclusive_lock, sha256_file
from cto_harness.providers.registry import provider_store_dir
from cto_harness.settings import Settings

READ_ONLY_FILE = 0o555
READ_ONLY_DIR = 0o555
WRITABLE_DIR = 0o755


@dataclass(frozen=True)
class StagedBinary:
    path: Path
    sha256: str
    size_bytes: int


# A provider binary past this is refused before a byte is copied: a build step has no file-size
# limit (it writes the binary), so it could leave a sparse file of any apparent size for the
# harness to copy into the store. Bun's single-file binaries are ~100 MiB.
MAX_BINARY_BYTES = 1 << 30


def _copy_synced(source: Path, target: Path) -> None:
    # O_NONBLOCK: a FIFO put where the binary was named never blocks the open.
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Blocked(BlockerCode.PROVIDER_NOT_ADMITTED, f"{source} is not a regular file")
        if st.st_size > MAX_BINARY_BYTES:
            raise Blocked(BlockerCode.PROVIDER_NOT_ADMITTED,
                          f"{source} is {st.st_size} bytes, past the {MAX_BINARY_BYTES >> 20} "
                          "MiB a provider binary may be: not copied, not admitted")
        with open(target, "xb") as dst:
            # One byte past the limit read at most: a file that grows while copied is refused.
            shutil.copyfileobj(_Bounded(src, MAX_BINARY_BYTES + 1), dst, 1 << 20)
            if dst.tell() > MAX_BINARY_BYTES:
                raise Blocked(BlockerCode.PROVIDER_NOT_ADMITTED,
                              f"{source} grew past {MAX_BINARY_BYTES >> 20} MiB while copied")
            dst.flush()
            os.fsync(dst.fileno())
    os.chmod(target, READ_ONLY_FILE)


class _Bounded:
    """A reader that gives at most `left` bytes of `source`."""

    def __init__(self, source: BinaryIO, left: int) -> None:
        self.source, self.left = source, left

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.source.read(size) if size > 0 else b""
        self.left -= len(data)
        return data


@contextlib.contextmanager
def staged_copy(settings: Settings, source: Path, provider: str, binary: str
                ) -> Iterator[StagedBinary]:
    """Copy `source` into a private staging directory (same file system as the store) as
    `binary` and hash the copy. The staging directory is removed on exit, whatever happened."""
    staging = provider_store_dir(settings, provider) / ".incoming" / uuid.uuid4().hex
    staging.mkdir(parents=True, mode=0o700)
    try:
        target = staging / binary
        _copy_synced(source, target)
        yield StagedBinary(target, sha256_file(target), target.stat().st_size)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def store_entry_dir(settings: Settings, sha256: str, provider: str) -> Path:
    return provider_store_dir(settings, provider) / sha256


@contextlib.contextmanager
def open_store_entry(settings: Settings, staged: StagedBinary, provider: str) -> Iterator[Path]:
    """Place the staged binary at `<store>/<sha256>/<binary>` (re-hashed after the move) and yield
    the entry directory, writable, for the reports; sealed read-only on exit.

    A per-digest lock keeps two admissions of the same bytes from unsealing each other's entry.
    """
    root = provider_store_dir(settings, provider)
    entry = store_entry_dir(settings, staged.sha256, provider)
    with exclusive_lock(root / f".{staged.sha256}.lock"):
        entry.mkdir(parents=True, exist_ok=True)
        target = entry / staged.path.name
        # The digest is known in advance: a link planted at the entry (or at the binary's
        # place in it) would carry the move, the chmod and the reports out of the store.
        for path, want in ((entry, stat.S_ISDIR), (target, stat.S_ISREG)):
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                continue
            if not want(mode):
                raise HarnessFault(f"store entry {path} is not a plain "
                                   f"{'folder' if path == entry else 'file'}: remove it")
        os.chmod(entry, WRITABLE_DIR)
        try:
            if not (target.is_file() and sha256_file(target) == staged.sha256):
                # Missing, or tampered with since an earlier admission: replace it.
                os.replace(staged.path, target)
                os.chmod(target, READ_ONLY_FILE)
            stored_digest = sha256_file(target)
            if stored_digest != staged.sha256:
                raise HarnessFault(
                    f"store copy {target} hashes to {stored_digest}, expected {staged.sha256}"
                )
            yield entry
        finally:
            os.chmod(entry, READ_ONLY_DIR)


def remove_tree(path: Path) -> None:
    """`rm -rf` that also removes read-only directories (build trees, sealed store entries)."""
    if not path.exists() and not path.is_symlink():
        return

    def make_writable_and_retry(func: Callable[[str], object], target: str, _info: object) -> None:
        parent = os.path.dirname(target)
        with contextlib.suppress(OSError):
            os.chmod(parent, WRITABLE_DIR)
        with contextlib.suppress(OSError):
            if not os.path.islink(target):
                os.chmod(target, WRITABLE_DIR)
        func(target)

    shutil.rmtree(path, onerror=make_writable_and_retry)
