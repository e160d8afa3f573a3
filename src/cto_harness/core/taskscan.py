"""The task contract may name no path outside the run's workspace (DESIGN section 5). Every
string a provider would see is scanned for absolute or home-relative paths, and for any
configured target-repository path, before anything is launched."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cto_harness.contracts import CaseSpec, TaskContract

# An absolute (`/x`) or home (`~/x`, `~user/x`) path not preceded by a word, dot, colon or slash,
# so that `https://host/x`, `a/b` and `./b` are not taken for one.
_PATH = re.compile(r"(?<![\w.:/~-])(~[\w-]*/[^\s'\"`,;)]*|/[^\s'\"`,;)]+)")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def outside_paths(
    texts: Iterable[str], workspace: Path, *, targets: Iterable[Path] = ()
) -> list[str]:
    workspace_text = str(workspace.resolve()) if workspace.exists() else str(workspace)
    target_texts = [str(t) for t in targets]
    found: list[str] = []
    for text in texts:
        for match in _PATH.finditer(text):
            candidate = match.group(1).rstrip(".")
            if candidate == workspace_text or candidate.startswith(workspace_text + "/"):
                continue
            found.append(candidate)
        found.extend(t for t in target_texts if t and t in text)
    return sorted(set(found))


def scan_contract(
    case: CaseSpec, workspace: Path, *, targets: Iterable[Path] = ()
) -> dict[str, Any]:
    contract = TaskContract.from_case(case).model_dump(mode="json")
    texts = list(_strings(contract))
    found = outside_paths(texts, workspace, targets=targets)
    return {"scanned_strings": len(texts), "outside_paths": found, "passed": not found}
