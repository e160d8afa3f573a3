"""Shared test set-up: the package on sys.path, Bun on PATH, and a stand-in provider built and
admitted once per session (reused by the provider tests and, later, the Case engine's tests)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

_LOCAL_BUN = ROOT / ".tools" / "bun" / "node_modules" / ".bin"
if shutil.which("bun") is None and (_LOCAL_BUN / "bun").exists():
    os.environ["PATH"] = os.pathsep.join([str(_LOCAL_BUN), os.environ.get("PATH", "")])

from cto_harness.provider.build import build_provider  # noqa: E402
from cto_harness.provider.policy import load_policy  # noqa: E402
from cto_harness.settings import Settings  # noqa: E402
from standin_helpers import POLICY_PATH, head_commit, make_standin_repo  # noqa: E402


class AdmittedStandin(NamedTuple):
    home: Path
    binary: Path
    sha256: str
    source: Path
    commit: str


@pytest.fixture(scope="session")
def admitted_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdmittedStandin]:
    """The normal stand-in, built and admitted (provenance `built`) in its own temporary
    `CTO_HARNESS_HOME`. Yields (home, store binary path, sha256, source checkout, commit)."""
    if shutil.which("bun") is None:
        pytest.fail("Bun is required: npm install --prefix .tools/bun bun@1")
    home = tmp_path_factory.mktemp("admitted-home")
    source = make_standin_repo(tmp_path_factory.mktemp("admitted-source"))
    commit = head_commit(source)
    settings = Settings.from_env({**os.environ, "CTO_HARNESS_HOME": str(home)})
    report = build_provider(str(source), commit, load_policy(POLICY_PATH), settings, progress=None)
    yield AdmittedStandin(
        home, Path(report.artifact.store_path), report.artifact.sha256, source, commit
    )
