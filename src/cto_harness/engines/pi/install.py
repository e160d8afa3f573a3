"""The admitted pi that one run executes: chosen from the admission registry, hard-linked into the
run's private folder from a launch copy of the store entry, and re-hashed there before pi runs
and again after it exited.

Linking (not copying) keeps a run's start cheap for a ~200 MB tree of ~20k files. The links never
point into the store itself: linking changes an inode's link count and ctime, which the
outside-write guard fingerprints under `$CTO_HARNESS_HOME` around every launch, so runs linking
the store while another run's provider ran would block that run `outside_write_detected`. Runs
link from one copy of the entry (`$CTO_HARNESS_HOME/launch-copies/pi/<sha256>/`, which the guard
skips and providers never see), made once under a lock and made again whenever the store entry's
metadata is no longer what it was copied from. A provider that
wrote through a link would change that copy: the run's own re-hash after pi exited names it
(`installed_copy_changed`, which fails the run) and drops the copy. A different file system (no
hard links) falls back to a copy.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from cto_harness.engines.provider import outside_policy
from cto_harness.errors import Blocked, BlockerCode
from cto_harness.fsutil import atomic_write_text, exclusive_lock, sha256_file, tree_digest
from cto_harness.providers.npm import RUNTIME, TREE, NpmDistribution, NpmPaths, entry_path
from cto_harness.providers.policy import ProviderPolicy
from cto_harness.providers.registry import AdmissionRecord, list_admissions
from cto_harness.providers.store import remove_tree
from cto_harness.sandbox.guard import fingerprint
from cto_harness.settings import Settings

_COPIED_FROM = "copied-from.json"  # the store entry's metadata fingerprint at copy time


@dataclass(frozen=True)
class RunCopy:
    """The run's copy: what the digests were computed over, and what will be executed."""

    root: Path
    tree: Path
    entry: Path
    runtime: Path
    tree_sha256: str
    entry_sha256: str
    runtime_sha256: str
    # What of the shared launch copy no longer hashed right when this run linked it, so it was
    # made again from the store: a write through an earlier run's links that no run named
    # (that run stopped before its own re-hash).
    remade: tuple[str, ...] = ()


def choose_admission(settings: Settings, policy: ProviderPolicy, wanted: str | None
                     ) -> AdmissionRecord:
    """The admission to run: the one whose digest starts with `wanted`, else the newest admitted
    record at the policy's version. `provider_unavailable` when there is none."""
    spec = policy.distribution
    assert isinstance(spec, NpmDistribution)
    # Only admissions of this policy's package: one made with another `--policy` is not.
    records = [r for r in list_admissions(settings, policy.name)
               if r.status == "admitted" and outside_policy(r, policy) is None]
    if wanted:
        matches = [r for r in records if r.sha256.startswith(wanted.lower())]
        if len(matches) != 1:
            raise Blocked(BlockerCode.PROVIDER_UNAVAILABLE,
                          f"{len(matches)} admitted {policy.name} installs match {wanted!r}",
                          marker="provider-unavailable.txt")
        return matches[0]
    at_pin = [r for r in records if r.pin == spec.version]
    if not at_pin:
        raise Blocked(BlockerCode.PROVIDER_UNAVAILABLE,
                      f"no admitted {spec.spec}: run `cto-harness provider build --provider "
                      f"{policy.name}`", marker="provider-unavailable.txt")
    return max(at_pin, key=lambda r: r.admitted_at)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(source, target)


def link_tree(source: Path, target: Path) -> None:
    """Recreate `source` under `target`: folders made, files hard-linked, symlinks re-created
    as links (never followed). Plain string paths: this runs over an npm install per run."""
    source_root, target_root = os.fspath(source), os.fspath(target)
    for dirpath, dirnames, filenames in os.walk(source_root):
        rel = os.path.relpath(dirpath, source_root)
        made = target_root if rel == "." else os.path.join(target_root, rel)
        os.makedirs(made, exist_ok=True)
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in [*filenames, *links]:
            src, dst = os.path.join(dirpath, name), os.path.join(made, name)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            else:
                _link_or_copy(src, dst)


def _store_fingerprint(store: NpmPaths) -> str:
    """The store entry's metadata (every path's mode, size, inode, mtime, ctime, link count)."""
    entries = {**fingerprint(store.tree), **fingerprint(store.runtime)}
    return json.dumps(sorted((k.removeprefix(str(store.entry_dir)), v)
                             for k, v in entries.items()))


def launch_copy(record: AdmissionRecord, settings: Settings) -> NpmPaths:
    """The copy of the admitted store entry that runs link from (see the module's note); made
    again when the store entry changed since it was copied (its re-hash then refuses it)."""
    store = NpmPaths(Path(record.store_path).parent)
    if not store.tree.is_dir() or not store.runtime.is_file():
        raise Blocked(BlockerCode.PROVIDER_UNAVAILABLE, f"the store entry {store.entry_dir} is "
                      "missing", marker="provider-unavailable.txt")
    copies = settings.launch_copies_dir / "pi"
    target = NpmPaths(copies / record.sha256)
    marker = target.entry_dir / _COPIED_FROM
    now = _store_fingerprint(store)
    if marker.is_file() and marker.read_text(encoding="utf-8") == now:
        return target
    with exclusive_lock(copies / f"{record.sha256}.lock"):
        if marker.is_file() and marker.read_text(encoding="utf-8") == now:
            return target
        staging = copies / f".{record.sha256}.{uuid.uuid4().hex}"
        try:
            shutil.copytree(store.tree, staging / TREE, symlinks=True)
            (staging / RUNTIME).mkdir()
            shutil.copy2(store.runtime, NpmPaths(staging).runtime)
            atomic_write_text(staging / _COPIED_FROM, now)
            remove_tree(target.entry_dir)
            os.replace(staging, target.entry_dir)
        finally:
            remove_tree(staging)
    return target


def drop_launch_copy(record: AdmissionRecord, settings: Settings) -> None:
    """Forget the launch copy (the next run copies the store entry again). Runs that linked it
    keep their links."""
    copies = settings.launch_copies_dir / "pi"
    with exclusive_lock(copies / f"{record.sha256}.lock"):
        remove_tree(copies / record.sha256)


def _link_copy(source: NpmPaths, root: Path, record: AdmissionRecord,
               spec: NpmDistribution) -> RunCopy:
    remove_tree(root)
    copy = NpmPaths(root)
    link_tree(source.tree, copy.tree)
    copy.runtime.parent.mkdir(parents=True, exist_ok=True)
    _link_or_copy(str(source.runtime), str(copy.runtime))
    return hashed(root, entry_path(copy.tree, spec, record.origin.get("entry", "")))


def hashed(root: Path, entry: Path) -> RunCopy:
    """The run's copy under `root` (its entry point `entry`), hashed now."""
    copy = NpmPaths(root)
    return RunCopy(root=root, tree=copy.tree, entry=entry, runtime=copy.runtime,
                   tree_sha256=tree_digest(copy.tree),
                   entry_sha256=sha256_file(entry) if entry.is_file() else "",
                   runtime_sha256=sha256_file(copy.runtime))


def changed_parts(copy: RunCopy, record: AdmissionRecord) -> list[str]:
    """What of `copy` no longer hashes to the admitted digests."""
    return [what for what, have, want in (
        ("installed tree", copy.tree_sha256, record.sha256),
        ("entry point", copy.entry_sha256, record.origin.get("entry_sha256")),
        ("runtime", copy.runtime_sha256, record.origin.get("runtime_sha256")),
    ) if have != want]


def place(record: AdmissionRecord, policy: ProviderPolicy, settings: Settings,
          root: Path) -> RunCopy:
    """Link the admitted install under `root` (from its launch copy) and hash the result (tree,
    entry point, runtime). A copy that no longer hashes right is dropped and made again from
    the store once; `provider_not_admitted` if the store itself does not hash right."""
    spec = policy.distribution
    assert isinstance(spec, NpmDistribution)
    found = _link_copy(launch_copy(record, settings), root, record, spec)
    if (wrong := changed_parts(found, record)) and \
            tree_digest(Path(record.store_path)) == record.sha256:  # only the copy is wrong
        drop_launch_copy(record, settings)
        found = replace(_link_copy(launch_copy(record, settings), root, record, spec),
                        remade=tuple(wrong))
    if wrong := changed_parts(found, record):
        raise Blocked(BlockerCode.PROVIDER_NOT_ADMITTED,
                      f"the {' and '.join(wrong)} of {spec.spec} no longer hash to the admitted "
                      f"digests (store {Path(record.store_path).parent}); admit it again",
                      marker="provider-not-admitted.txt")
    return found
