"""Fixtures of the Case engine's tests: stand-in variants built with real Bun through the real
build + admission route (cached per session), and a temporary repository copy whose provider
policy admits test models (so its `harness/evals/run-case.sh` is the users' command)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from case_helpers import GATEWAY_MODEL, TEST_MODEL
from cto_harness.providers.build import build_provider
from cto_harness.providers.policy import load_policy
from cto_harness.settings import Settings
from cto_harness.validators.conformance import linked_checkout
from standin_helpers import (
    REPO_ROOT,
    accept_pin,
    head_commit,
    make_standin_repo,
    policy_accepting,
)


@pytest.fixture(scope="session")
def case_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's `harness/` (with `src`, `.venv` and `.tools` linked) whose
    policy admits test models, so that `harness/evals/run-case.sh` in it is the users' command
    against that policy."""
    root = linked_checkout(REPO_ROOT, tmp_path_factory.mktemp("case-repo"))
    policy = root / "harness" / "providers" / "case" / "policy.toml"
    with open(policy, "a", encoding="utf-8") as handle:
        handle.write(
            f'\n[[models]]\nprovider = "{TEST_MODEL[0]}"\nmodel = "{TEST_MODEL[1]}"\n'
            f'\n[[models]]\nprovider = "{GATEWAY_MODEL[0]}"\nmodel = "{GATEWAY_MODEL[1]}"\n'
            f'base_url = "{GATEWAY_MODEL[2]}"\n'
        )
    load_policy(policy)  # still valid
    return root


@pytest.fixture(scope="session")
def case_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CTO_HARNESS_HOME of the Case tests: its registry holds only their stand-ins (the
    provider tests' own home is left alone)."""
    if shutil.which("bun") is None:
        pytest.fail("Bun is required: npm install --prefix .tools/bun bun@1")
    return tmp_path_factory.mktemp("case-home")


@pytest.fixture(scope="session")
def standin(case_home: Path, case_repo: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Callable[[str], Path]:
    """`standin(scenario)`: the store path of that stand-in variant, built with Bun and admitted
    (provenance `built`) in `case_home`, once per session; its commit is recorded as an accepted
    pin in `case_repo`'s policy (runs under the shipped policy do not accept it)."""
    cache: dict[str, Path] = {}
    settings = Settings.from_env({**os.environ, "CTO_HARNESS_HOME": str(case_home)})

    def get(scenario: str) -> Path:
        if scenario not in cache:
            source = make_standin_repo(tmp_path_factory.mktemp(f"src-{scenario}"),
                                       scenario=scenario)
            commit = head_commit(source)
            report = build_provider(str(source), commit, policy_accepting(commit), settings,
                                    progress=None)
            accept_pin(case_repo / "harness" / "providers" / "case" / "policy.toml", commit)
            cache[scenario] = Path(report.artifact.store_path)
        return cache[scenario]

    return get
