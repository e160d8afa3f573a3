"""Engines as plug-ins: the registry imports an engine only when asked for, finds engines that
installed packages declare (entry point group `cto_harness.engines`), and engines keep no state
between the stages of a run (values flow through `Admission` and `Outcome`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT, REPO_ROOT
from cto_harness import engines
from cto_harness.core.run import execute_run
from cto_harness.engines import engine_class, engine_names, get_engine
from cto_harness.errors import HarnessFault, UsageError


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=REPO_ROOT, check=False)


def test_a_fake_run_never_loads_the_case_engine_or_the_build_route() -> None:
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from cto_harness.core.run import execute_run
        result = execute_run("r1-string-slugify", harness_root=Path({str(HARNESS_ROOT)!r}))
        assert result.report.verdict == "pass", result.report.verdict
        print(sorted(m for m in sys.modules if m.startswith(("cto_harness.engines.case.engine",
                                                             "cto_harness.providers"))))
    """)
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_an_installed_package_adds_an_engine_through_an_entry_point(tmp_path: Path) -> None:
    # A third-party engine, as a package would ship it: a module and a dist-info entry point.
    (tmp_path / "echo_engine.py").write_text(textwrap.dedent("""
        from pydantic_settings import SettingsConfigDict
        from cto_harness.engines.fake.engine import FakeEngine, FakeSettings

        class EchoSettings(FakeSettings):
            model_config = SettingsConfigDict(env_prefix="CTO_HARNESS_ECHO_")

        class EchoEngine(FakeEngine):
            name = "echo"
            settings_model = EchoSettings
    """))
    info = tmp_path / "echo_engine-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-engine\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cto_harness.engines]\necho = echo_engine:EchoEngine\n")
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from cto_harness.core.run import execute_run
        from cto_harness.engines import engine_names
        names = engine_names()
        loaded_before = "echo_engine" in sys.modules
        result = execute_run("r1-string-slugify", "echo", harness_root=Path({str(HARNESS_ROOT)!r}))
        print(json.dumps({{"names": names, "loaded_before": loaded_before,
                          "engine": result.report.engine, "verdict": result.report.verdict}}))
    """)
    proc = _python(code, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO_ROOT / "src")]),
                   CTO_HARNESS_ECHO_TIMEOUT_SECONDS="60")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert "echo" in seen["names"] and {"fake", "case"} <= set(seen["names"])
    assert seen["loaded_before"] is False  # listing engines imports none of them
    assert (seen["engine"], seen["verdict"]) == ("echo", "pass")


def test_an_unknown_engine_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown engine 'nope'"):
        get_engine("nope")
    assert "nope" not in engine_names()


def test_a_registration_that_is_not_an_engine_is_a_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(engines.BUILTIN_ENGINES, "broken", "cto_harness.settings:Settings")
    with pytest.raises(HarnessFault, match="broken"):
        engine_class("broken")


def test_an_engine_keeps_no_state_between_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = get_engine("fake")
    monkeypatch.setattr("cto_harness.core.run.get_engine", lambda name: shared)
    first = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    second = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    assert (first.report.verdict, second.report.verdict) == ("pass", "pass")
    assert vars(shared) == {}
    assert first.report.provider.executed_path != second.report.provider.executed_path


def test_the_provider_outcome_is_recorded_beside_the_verdict() -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    said = result.report.provider_outcome
    assert said.outcome == "completed" and said.source == "backend/fake-events.jsonl"
    assert [p.phase for p in said.phases] == ["implement"]
    assert result.report.provider_process_started is result.report.case_process_started is True
    assert "the provider's own outcome** (recorded, not trusted): pipeline **completed** — " \
        "agrees with the verdict" in (result.run_dir / "report.md").read_text()


def test_the_library_api_runs_verifies_and_admits(tmp_path: Path) -> None:
    from cto_harness import api
    from standin_helpers import POLICY_PIN, write_script_binary

    result = api.execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    assert api.verify_bundle(result.run_dir, result.public_key).verdict == "pass"
    report = api.admit(write_script_binary(tmp_path / "ca"),
                       source_url="https://github.com/workos/case.git", commit=POLICY_PIN,
                       harness_root=HARNESS_ROOT, progress=None)
    assert report.provenance_level == "asserted"
    with pytest.raises(api.Blocked) as caught:
        api.admit(tmp_path / "absent", source_url="https://github.com/workos/case.git",
                  commit=POLICY_PIN, harness_root=HARNESS_ROOT, progress=None)
    assert caught.value.code == api.BlockerCode.DIST_MISSING
    assert api.exit_code_for(caught.value) == 2
