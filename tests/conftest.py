"""Shared fixtures: the package and tests on sys.path, Bun on PATH, a private harness home per
test, a factory for temporary fixture cases, and a stand-in provider built and admitted once per
session (reused by the provider tests and the Case engine's tests)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ROOT = REPO_ROOT
HARNESS_ROOT = REPO_ROOT / "harness"
SHARED = REPO_ROOT.parent / "shared"
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

_LOCAL_BUN = REPO_ROOT / ".tools" / "bun" / "node_modules" / ".bin"
if shutil.which("bun") is None and (_LOCAL_BUN / "bun").exists():
    os.environ["PATH"] = os.pathsep.join([str(_LOCAL_BUN), os.environ.get("PATH", "")])

from cto_harness.providers.report import ProviderReport  # noqa: E402
from standin_helpers import (  # noqa: E402
    head_commit,
    make_standin_repo,
    run_provider_cli,
    write_policy_accepting,
)

# Nothing a test starts may outlive it or the session (tests/process_guard.py). The browser
# fixtures are registered here, once: a fixture imported into two conftests is two session
# fixtures, and a second Playwright started beside the first one in a worker fails.
pytest_plugins = ["process_guard", "browser_helpers"]

# `python3` as the interpreter running the tests resolves it, without a version manager's shim in
# front (pyenv's runs ~15 helper processes, ~100 ms, on every start): the harness starts
# `python3` for every fixture's test collection and the tests start it too. Same interpreter.
_INTERPRETER_DIR = str(Path(sys.executable).resolve().parent)
if shutil.which("python3") != str(Path(_INTERPRETER_DIR) / "python3") and (
        Path(_INTERPRETER_DIR) / "python3").is_file():
    os.environ["PATH"] = os.pathsep.join([_INTERPRETER_DIR, os.environ.get("PATH", "")])

# The longest test files, longest first (seconds of test time in `make test` on 2 busy cores,
# /tmp on a tmpfs: 89, 75, 70, 62, 51, 44, 37, 31, 27, 21, 18, 15, 15, 15, 13, 12). `make test`
# hands whole files to its workers in collection order (--dist loadfile --no-loadscope-reorder):
# these start first, so that no long file starts last while the other worker has nothing left to
# do. Every other file keeps its place after them. Measured with `--durations=0`; update it when a file grows.
LONGEST_FIRST = (
    "tests/hostile/test_hostile.py",
    "tests/pi/test_pi_breaks_runs.py",
    "tests/pi/test_pi_breaks_gates.py",
    "tests/ray_executor/test_multinode.py",
    "tests/pi/test_pi_validator.py",
    "tests/case/test_case_model.py",
    "tests/case/test_case_hostile.py",
    "tests/pi/test_pi_scripted.py",
    "tests/test_adapter_validator.py",
    "tests/provider/test_build_route.py",
    "tests/case/test_case_gates.py",
    "tests/viewer/test_browser.py",
    "tests/pi/test_npm_admission.py",
    "tests/test_suite.py",
    "tests/pi/test_pi_gates.py",
    "tests/pi/test_pi_install.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [name for name in LONGEST_FIRST if not (REPO_ROOT / name).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names missing files: {missing}")
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))


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


class AdmittedStandin(NamedTuple):
    home: Path
    binary: Path
    sha256: str
    source: Path
    commit: str


@pytest.fixture(scope="session")
def admitted_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdmittedStandin]:
    """The normal stand-in, built and admitted (provenance `built`) in its own temporary
    `CTO_HARNESS_HOME` through the users' command (`provider build --json`, its printed report
    read strictly). Yields (home, store binary path, sha256, source checkout, commit)."""
    if shutil.which("bun") is None:
        pytest.fail("Bun is required: npm install --prefix .tools/bun bun@1")
    home = tmp_path_factory.mktemp("admitted-home")
    source = make_standin_repo(tmp_path_factory.mktemp("admitted-source"))
    commit = head_commit(source)
    policy = write_policy_accepting(tmp_path_factory.mktemp("admitted-policy") / "policy.toml",
                                    commit)
    built = run_provider_cli(home, "build", "--source", str(source), "--commit", commit,
                             "--policy", str(policy), "--json")
    if built.returncode != 0:
        pytest.fail(f"the stand-in build failed (exit {built.returncode}): {built.stderr[-2000:]}")
    report = ProviderReport.model_validate_json(built.stdout)
    yield AdmittedStandin(
        home, Path(report.artifact.store_path), report.artifact.sha256, source, commit
    )
