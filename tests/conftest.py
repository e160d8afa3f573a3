"""Shared fixtures: a private harness home per test, the repository's harness folder, and a
factory for temporary fixture cases (copies of a real case with changes)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HARNESS_ROOT = REPO_ROOT / "harness"
SHARED = REPO_ROOT.parent / "shared"
_BUN_DIR = REPO_ROOT / ".tools" / "bun" / "node_modules" / ".bin"

if _BUN_DIR.is_dir() and str(_BUN_DIR) not in os.environ.get("PATH", ""):
    os.environ["PATH"] = f"{_BUN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(autouse=True)
def harness_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own CTO_HARNESS_HOME and runs dir; no real provider settings leak in."""
    home = tmp_path / "cto-home"
    monkeypatch.setenv("CTO_HARNESS_HOME", str(home))
    monkeypatch.setenv("CTO_HARNESS_RUNS_DIR", str(home / "harness-runs"))
    for name in list(os.environ):
        if name.startswith("CTO_HARNESS_CASE_") or name == "CTO_HARNESS_ALLOW_CASE":
            monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def runs_dir(harness_home: Path) -> Path:
    return harness_home / "harness-runs"


CaseFactory = Callable[..., Path]


@pytest.fixture
def case_factory(tmp_path: Path) -> Iterator[CaseFactory]:
    """make(case_id, base="r1-string-slugify", toml=None, files={...}, toml_edit=fn) -> harness root.

    Copies the repository's harness folder into a temporary one and adds a case derived from
    `base`: `files` maps paths (relative to the case folder) to new contents, `toml` replaces
    case.toml entirely, `toml_edit` rewrites its text.
    """
    root = tmp_path / "harness"
    shutil.copytree(HARNESS_ROOT, root, symlinks=True)

    def make(
        case_id: str,
        base: str = "r1-string-slugify",
        *,
        toml: str | None = None,
        toml_edit: Callable[[str], str] | None = None,
        files: dict[str, str] | None = None,
    ) -> Path:
        folder = root / "evals" / "cases" / case_id
        shutil.copytree(HARNESS_ROOT / "evals" / "cases" / base, folder, symlinks=True)
        text = (folder / "case.toml").read_text().replace(f'id = "{base}"', f'id = "{case_id}"')
        if toml_edit is not None:
            text = toml_edit(text)
        if toml is not None:
            text = toml
        (folder / "case.toml").write_text(text)
        for rel, content in (files or {}).items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(content)
        return root

    yield make


def files_outside(root: Path, exclude: Path) -> set[Path]:
    """Every file below `root` except those under `exclude` (to prove nothing was written)."""
    return {p for p in root.rglob("*") if exclude not in p.parents and p != exclude}
