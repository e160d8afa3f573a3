"""Which files make a bundle: the one listing the manifest is made from and `verify` holds it to
(kept apart so that every module that reads a bundle can use it without the sealing code)."""

from __future__ import annotations

import os
from pathlib import Path

# Working folders of a run: present in the run directory, never part of the evidence.
WORK_DIRS = frozenset({"workspace", "private"})


def is_temporary_name(name: str) -> bool:
    """An atomic write's temporary file (`.<name>.<random>.tmp`), left by an interrupted write."""
    return name.startswith(".") and name.endswith(".tmp")


def bundle_files(root: Path) -> list[str]:
    """Every file of the bundle rooted at `root` (and of a nested baseline bundle), sorted; no
    link is followed. Left out: the working folders and a leftover temporary file, never a
    folder so named (what it holds is listed, and `verify` refuses what is not in the manifest)."""
    found: list[str] = []
    # (folder, its path in the bundle, whether it is a bundle root): a stack, not recursion.
    stack: list[tuple[Path, str, bool]] = [(root, "", True)]
    while stack:
        folder, rel_prefix, bundle_root = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if bundle_root and entry.name in WORK_DIRS:
                    continue
                rel = f"{rel_prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    # A nested baseline is a bundle of its own, with its own working folders.
                    stack.append((Path(entry.path), rel + "/",
                                  bundle_root and entry.name == "baseline"))
                elif not is_temporary_name(entry.name):  # a folder never is one
                    found.append(rel)
    return sorted(found)
