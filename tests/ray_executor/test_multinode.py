"""The Ray executor on a real multi-node cluster: re-executes `netns_cluster.py` under
`unshare --net` (a network namespace with only `lo`, so every node binds 127.0.0.1 and nothing
is reachable from outside), then checks that every one of its tests ran and passed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from cto_harness.executors.local_cluster import loopback_namespace_argv

INNER = Path(__file__).with_name("netns_cluster.py")
INNER_TESTS = 6

pytestmark = pytest.mark.slow


def _ray_available() -> bool:
    if importlib.util.find_spec("ray") is not None:
        return True
    if os.environ.get("CTO_HARNESS_REQUIRE_RAY") == "1":
        pytest.fail("Ray is required here (CTO_HARNESS_REQUIRE_RAY=1): pip install -e '.[dev]'")
    return False


def test_multinode_cluster_in_a_loopback_namespace(tmp_path: Path) -> None:
    if not _ray_available():
        pytest.skip("Ray is not installed: pip install 'cto-harness[ray]' (or '.[dev]')")
    report = tmp_path / "inner.xml"
    env = {**os.environ, "CTO_HARNESS_IN_LOOPBACK_NETNS": "1",
           "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run(
        [*loopback_namespace_argv(), sys.executable, "-m", "pytest", "-q", "-p",
         "no:cacheprovider", "-o", "addopts=", str(INNER), f"--junitxml={report}",
         f"--basetemp={tmp_path / 'inner'}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800,
        stdin=subprocess.DEVNULL)
    output = (done.stdout + done.stderr)[-6000:]
    assert report.is_file(), output
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": INNER_TESTS, "failures": 0, "errors": 0, "skipped": 0}, output
    assert done.returncode == 0, output
