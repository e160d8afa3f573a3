"""pi admitted once per session through the real npm route (the pinned version fetched from the
registry npm is configured with, its integrity checked, installed without scripts, stored and
recorded) in a session home."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from cto_harness.providers.npm import admit_npm_package
from cto_harness.providers.policy import load_policy
from cto_harness.settings import Settings
from pi_helpers import PI_POLICY, AdmittedPi


@pytest.fixture(scope="session")
def admitted_pi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdmittedPi]:
    if shutil.which("npm") is None or shutil.which("bun") is None:
        pytest.fail("npm and Bun are required (make install)")
    home = tmp_path_factory.mktemp("pi-home")
    settings = Settings.from_env({**os.environ, "CTO_HARNESS_HOME": str(home)})
    report = admit_npm_package(None, None, load_policy(PI_POLICY), settings, progress=None)
    yield AdmittedPi.of(home, report)
