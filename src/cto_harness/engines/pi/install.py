"""The admitted pi that one run executes: chosen from the admission registry, hard-linked from the
store into the run's private folder, and re-hashed there before anything runs.

Linking (not copying) keeps a run's start cheap for a ~150 MB tree of ~20k files; the links are
the store's own inodes, so a provider that wrote through one would change a file under
`$CTO_HARNESS_HOME`, which the outside-write guard fingerprints around every launch (mode, size,
mtime, ctime, link count), and the next run's re-hash would refuse the store. A different file
system (no hard links) falls back to a copy.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cto_harness.errors import Blocked, BlockerCode
from cto_harness.fsutil import sha256_file, tree_digest
from cto_harness.providers.npm import NpmDistribution, NpmPaths, entry_path
from cto_harness.providers.policy import ProviderPolicy
from cto_harness.providers.registry import AdmissionRecord, list_admissions
from cto_harness.settings import Settings


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


def choose_admission(settings: Settings, policy: ProviderPolicy, wanted: str | None
                     ) -> AdmissionRecord:
    """The admission to run: the one whose digest starts with `wanted`, else the newest admitted
    record at the policy's version. `provider_unavailable` when there is none."""
    spec = policy.distribution
    assert isinstance(spec, NpmDistribution)
    records = [r for r in list_admissions(settings, policy.name)
               if r.status == "admitted" and r.kind == "npm"]
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
    as links (never followed)."""
    for dirpath, dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in [*filenames, *(d for d in dirnames if (Path(dirpath) / d).is_symlink())]:
            src, dst = Path(dirpath) / name, target / rel / name
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                _link_or_copy(str(src), str(dst))


def place(record: AdmissionRecord, policy: ProviderPolicy, root: Path) -> RunCopy:
    """Link the admitted store entry under `root` and hash the result (tree, entry point,
    runtime). `provider_not_admitted` if any digest is not the recorded one."""
    spec = policy.distribution
    assert isinstance(spec, NpmDistribution)
    store = NpmPaths(Path(record.store_path).parent)
    if not store.tree.is_dir() or not store.runtime.is_file():
        raise Blocked(BlockerCode.PROVIDER_UNAVAILABLE,
                      f"the store entry {store.entry_dir} is missing", marker="provider-unavailable.txt")
    copy = NpmPaths(root)
    link_tree(store.tree, copy.tree)
    copy.runtime.parent.mkdir(parents=True, exist_ok=True)
    _link_or_copy(str(store.runtime), str(copy.runtime))
    entry = entry_path(copy.tree, spec, record.origin.get("entry", ""))
    found = RunCopy(root=root, tree=copy.tree, entry=entry, runtime=copy.runtime,
                    tree_sha256=tree_digest(copy.tree),
                    entry_sha256=sha256_file(entry) if entry.is_file() else "",
                    runtime_sha256=sha256_file(copy.runtime))
    wrong = [what for what, have, want in (
        ("installed tree", found.tree_sha256, record.sha256),
        ("entry point", found.entry_sha256, record.origin.get("entry_sha256")),
        ("runtime", found.runtime_sha256, record.origin.get("runtime_sha256")),
    ) if have != want]
    if wrong:
        raise Blocked(BlockerCode.PROVIDER_NOT_ADMITTED,
                      f"the {' and '.join(wrong)} of {spec.spec} no longer hash to the admitted "
                      f"digests (store {store.entry_dir}); admit it again",
                      marker="provider-not-admitted.txt")
    return found
