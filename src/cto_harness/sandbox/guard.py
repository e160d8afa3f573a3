"""After-the-fact guards that hold on every isolation tier, including `none`.

* **Outside writes**: a cheap metadata fingerprint (type, size, mode, inode, mtime, ctime: ctime
  cannot be set back by a process) of every watched root, taken just before the provider starts
  and again just after it exits. Watched: the run's own bundle folder (all but the workspace, the
  private dirs and the two logs the harness is writing), every configured target repository, the
  harness's fixture cases and `$CTO_HARNESS_HOME` (all but the runs directory). A change in the
  bundle blocks `bundle_tampered`; anywhere else `outside_write_detected`. On the bwrap and
  Landlock tiers such writes are already prevented; on `none` this is what detects them.
* **Disk**: the total apparent size of everything the provider may write (sparse files count at
  their full size) against `CTO_HARNESS_WORKSPACE_LIMIT_MB`; over it blocks
  `workspace_size_exceeded`. The same limit is set as RLIMIT_FSIZE on the provider, so one
  runaway file stops at the limit instead of filling the disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cto_harness.errors import Blocked, BlockerCode

MAX_ENTRIES = 200_000
Entry = tuple[int, int, int, int, int, int]


def fingerprint(root: Path, exclude: frozenset[Path] = frozenset()) -> dict[str, Entry]:
    """Path → (mode, size, inode, mtime_ns, ctime_ns, nlink) for `root` and all below it."""
    found: dict[str, Entry] = {}
    if not os.path.lexists(root):
        return found
    stack = [root]
    while stack and len(found) < MAX_ENTRIES:
        current = stack.pop()
        try:
            st = current.lstat()
        except OSError:
            continue
        found[str(current)] = (st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns,
                               st.st_nlink)
        if current.is_dir() and not current.is_symlink():
            try:
                with os.scandir(current) as entries:
                    stack.extend(Path(e.path) for e in entries if Path(e.path) not in exclude)
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
        outside: list[str] = []
        for root, skip in self.roots.items():
            outside += _diff(self.before[root], fingerprint(root, skip | {self.bundle_root}))
        return bundle, sorted(set(outside))

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


def _diff(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    changed = [p for p in before.keys() | after.keys() if before.get(p) != after.get(p)]
    return sorted(changed)


def apparent_size(paths: list[Path], stop_after: int) -> int:
    """Sum of st_size below `paths` (not following symlinks), stopping once past `stop_after`."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [p for p in paths if os.path.lexists(p)]
    while stack:
        current = stack.pop()
        try:
            st = current.lstat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if current.is_dir() and not current.is_symlink():
            try:
                with os.scandir(current) as entries:
                    stack.extend(Path(e.path) for e in entries)
            except OSError:
                continue
        else:
            total += st.st_size
            if total > stop_after:
                return total
    return total


def check_disk(paths: list[Path], limit: int) -> int:
    used = apparent_size(paths, limit)
    if used > limit:
        raise Blocked(BlockerCode.WORKSPACE_SIZE_EXCEEDED,
                      f"the provider wrote more than the {limit // (1024 * 1024)} MiB limit "
                      f"(CTO_HARNESS_WORKSPACE_LIMIT_MB) into the workspace and its private dirs")
    return used
