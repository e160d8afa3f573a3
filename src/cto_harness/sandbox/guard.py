"""After-the-fact guards that hold on every isolation tier, including `none`.

* **Outside writes**: a cheap metadata fingerprint (type, size, mode, inode, mtime, ctime: ctime
  cannot be set back by a process) of every watched root, taken just before the provider starts
  and again just after it exits, and outside the bundle once more after the verification (which
  runs code the provider may have changed). Watched: the run's own bundle folder (all but the
  workspace, the private dirs and the two logs the harness is writing), every configured target
  repository, the harness's fixture cases and `$CTO_HARNESS_HOME` (all but the runs directory).
  A change in the bundle blocks `bundle_tampered`; anywhere else `outside_write_detected`. On the
  bwrap and Landlock tiers such writes are already prevented; on `none` this is what detects them.
* **Disk**: the same limit, `CTO_HARNESS_WORKSPACE_LIMIT_MB`, is set as RLIMIT_FSIZE on the
  provider (one runaway file stops there instead of filling the disk); the total is charged by
  the one walk of the workspace after the run (`tree.py` Budget, every hard link at full
  size, sparse files at their apparent size, before any content is read): over it blocks
  `workspace_size_exceeded`. While the provider runs, `DiskWatch` stops it once its folders
  hold more than the limit: RLIMIT_FSIZE bounds one file, not how many, and a provider that wrote
  file after file under it filled the host's disk during the run (and the blocked run left it
  full).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cto_harness.errors import Blocked, BlockerCode
from cto_harness.tree import ENTRY_COST, Budget, BudgetExceeded, TreeChanged, walk

MAX_ENTRIES = 200_000
Entry = tuple[int, int, int, int, int, int]


def fingerprint(root: Path, exclude: frozenset[Path] = frozenset()) -> dict[str, Entry]:
    """Path → (mode, size, inode, mtime_ns, ctime_ns, nlink) for `root` and all below it.

    Plain strings and `lstat` only (no Path objects per entry): this walks the whole harness
    home twice per run, tens of thousands of entries with an npm provider installed."""
    found: dict[str, Entry] = {}
    skip = {os.fspath(p) for p in exclude}
    stack = [os.fspath(root)]
    while stack and len(found) < MAX_ENTRIES:
        current = stack.pop()
        try:
            st = os.lstat(current)
        except OSError:
            continue
        found[current] = (st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns,
                          st.st_nlink)
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(current) as entries:
                    stack.extend(path for e in entries if (path := e.path) not in skip)
            except OSError:
                continue
    return found


@dataclass
class Watch:
    """Fingerprints of the watched roots before the provider started."""

    bundle_root: Path
    bundle_exclude: frozenset[Path]
    roots: dict[Path, frozenset[Path]]
    before: dict[Path, dict[str, Entry]] = field(default_factory=dict)

    @classmethod
    def start(cls, run_dir: Path, others: list[Path], exclude: frozenset[Path]) -> Watch:
        bundle_exclude = frozenset({run_dir / "workspace", run_dir / "private",
                                    run_dir / "backend" / "stdout.log",
                                    run_dir / "backend" / "stderr.log"})
        roots = {p: exclude for p in dict.fromkeys(others) if p != run_dir}
        watch = cls(bundle_root=run_dir, bundle_exclude=bundle_exclude, roots=roots)
        watch.before[run_dir] = fingerprint(run_dir, bundle_exclude)
        for root, skip in roots.items():
            watch.before[root] = fingerprint(root, skip | {run_dir})
        return watch

    def changes(self) -> tuple[list[str], list[str]]:
        """(changed paths in the bundle, changed paths elsewhere)."""
        bundle = _diff(self.before[self.bundle_root],
                       fingerprint(self.bundle_root, self.bundle_exclude))
        return bundle, self.outside_changes()

    def outside_changes(self) -> list[str]:
        """Changed paths outside the bundle since the provider started."""
        outside: list[str] = []
        for root, skip in self.roots.items():
            outside += _diff(self.before[root], fingerprint(root, skip | {self.bundle_root}))
        return sorted(set(outside))

    def check(self) -> dict[str, list[str]]:
        bundle, outside = self.changes()
        if bundle:
            raise Blocked(BlockerCode.BUNDLE_TAMPERED,
                          f"the bundle folder changed while the provider ran: "
                          f"{', '.join(bundle[:5])}")
        if outside:
            raise Blocked(BlockerCode.OUTSIDE_WRITE_DETECTED,
                          f"paths outside the workspace changed while the provider ran: "
                          f"{', '.join(outside[:5])}")
        return {"bundle": bundle, "outside": outside}

    def check_outside(self, during: str) -> None:
        """Again after a later sandboxed step (the verification runs code the provider may have
        changed): nothing outside may have changed since the provider started. The bundle is
        not compared: the harness writes into it meanwhile, and the seal covers it."""
        if outside := self.outside_changes():
            raise Blocked(BlockerCode.OUTSIDE_WRITE_DETECTED,
                          f"paths outside the workspace changed during {during}: "
                          f"{', '.join(outside[:5])}")


def _diff(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    changed = [p for p in before.keys() | after.keys() if before.get(p) != after.get(p)]
    return sorted(changed)


@dataclass
class DiskWatch:
    """Polled while the provider runs (`run_process(watch=...)`): a reason to stop it once the
    folders it may write hold more than `limit` bytes (charged as the walk after the run
    charges them). Cheap by construction: the folders are walked only when their file system
    has lost, since the last walk, as many blocks or inodes as the provider may still use."""

    folders: list[Path]
    limit: int
    _used: tuple[int, int] = (0, 0)  # (bytes, inodes) in use on the file system at the last look
    _held: int = 0  # what the folders held then, as charged

    def __post_init__(self) -> None:
        self._used = self._fs_used()

    def _fs_used(self) -> tuple[int, int]:
        try:
            st = os.statvfs(self.folders[0])
        except OSError:
            return self._used
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree

    def __call__(self) -> str | None:
        used = self._fs_used()
        room = self.limit - self._held
        grown = max(used[0] - self._used[0], (used[1] - self._used[1]) * ENTRY_COST)
        if grown <= room:
            return None
        budget = Budget(self.limit)
        try:
            for folder in self.folders:
                for _ in walk(folder, budget=budget):
                    pass
        except BudgetExceeded:
            return (f"its folders held more than the {self.limit // (1024 * 1024)} MiB limit "
                    f"(CTO_HARNESS_WORKSPACE_LIMIT_MB) while it ran")
        except (TreeChanged, OSError):  # changing under the walk: look again next time
            return None
        self._used, self._held = used, budget.used  # someone else's writes: look again later
        return None
