"""`suite --engine a,b`: one suite per engine, pass@k side by side in engines.json, read from
verified bundles; and the adapter validator run per engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cto_harness.core.engine_compare import comparison_table
from pi_helpers import REPO_ROOT


def cli(*args: str, home: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTO_HARNESS_")}
    env |= {"CTO_HARNESS_HOME": str(home), "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "cto_harness", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, cwd=REPO_ROOT, check=False)


def test_two_engines_side_by_side(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    done = cli("suite", "--engine", "fake,pi", "--jobs", "1", "--json", "--suite-dir", str(suite),
               "r1-string-slugify", home=tmp_path / "home")
    # No pi is admitted in this home: its run is blocked, the suite's exit is the worst (2).
    assert done.returncode == 2, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert data == json.loads((suite / "engines.json").read_text())
    assert data["engines"] == ["fake", "pi"]
    figures = data["cases"]["r1-string-slugify"]
    assert (figures["fake"]["passes"], figures["fake"]["runs"], figures["fake"]["pass@1"]) == \
        (1, 1, 1.0)
    assert (figures["pi"]["passes"], figures["pi"]["blocked"], figures["pi"]["pass@1"]) == \
        (0, 1, 0.0)
    # Each engine's own suite, read back from its bundles.
    for engine in ("fake", "pi"):
        own = json.loads((suite / engine / "suite.json").read_text())
        assert own["engine"] == engine and own["runs"][0]["verdict"] in ("pass", "blocked")
    table = comparison_table(data)
    assert "1/1 pass@1 1.00" in table and "0/1 pass@1 0.00 (1 blocked)" in table


def test_an_engine_listed_twice_is_a_usage_error(tmp_path: Path) -> None:
    done = cli("suite", "--engine", "fake,fake", "r1-string-slugify", home=tmp_path / "home")
    assert done.returncode == 64 and "twice" in done.stderr
    assert not (tmp_path / "home" / "suites").exists()


def test_adapter_validator_per_engine(tmp_path: Path) -> None:
    done = cli("validate", "adapter", "--engine", "fake", "--json", home=tmp_path / "home")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and [c["name"] for c in result["checks"]] == [
        "fake_default_lane", "fake_fixture_pristine"]
    unknown = cli("validate", "adapter", "--engine", "nope", home=tmp_path / "home")
    assert unknown.returncode == 64 and "known: case, fake, pi" in unknown.stderr
