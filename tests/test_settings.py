"""Settings resolve flag > environment > config file > default and record where each value came
from; every engine reads only its own prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from cto_harness.config import add_target
from cto_harness.engines.case.engine import CaseSettings
from cto_harness.engines.fake.engine import FakeSettings
from cto_harness.errors import UsageError
from cto_harness.settings import Settings


def test_each_value_comes_from_the_first_layer_that_has_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('isolation = "none"\nworkspace_limit_mb = 8\n'
                                      'runs_dir = "/srv/runs-from-config"\n')
    env = {"CTO_HARNESS_HOME": str(home), "CTO_HARNESS_WORKSPACE_LIMIT_MB": "16"}
    settings = Settings.from_env(env, flags={"runs_dir": tmp_path / "from-flag"})
    assert settings.isolation == "none"  # the config file's
    assert settings.workspace_limit_mb == 16  # the environment beats the config file
    assert settings.runs_dir == tmp_path / "from-flag"  # a flag beats everything
    assert settings.sources == {
        "home": "env CTO_HARNESS_HOME",
        "runs_dir": "flag --runs-dir",
        "isolation": f"{home / 'config.toml'}: isolation",
        "workspace_limit_mb": "env CTO_HARNESS_WORKSPACE_LIMIT_MB",
        "target_repositories": "config file + env CTO_HARNESS_TARGET_REPOSITORIES",
        "sandbox_uids": "default",
    }


def test_defaults_are_recorded_as_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path)})
    assert settings.home == tmp_path / ".local" / "state" / "cto-harness"
    assert settings.runs_dir == settings.home / "harness-runs"
    assert settings.sources["home"] == settings.sources["runs_dir"] == "default"
    assert settings.sandbox_uids == (61100, 61163)


def test_a_bad_config_value_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('isolation = "chroot"\n')
    with pytest.raises(UsageError, match=r"config\.toml: isolation"):
        Settings.from_env({"CTO_HARNESS_HOME": str(tmp_path)})


def test_adding_a_target_keeps_the_other_settings_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('isolation = "landlock"\n')
    add_target(tmp_path, str(tmp_path / "secret-repo"))
    settings = Settings.from_env({"CTO_HARNESS_HOME": str(tmp_path)})
    assert settings.isolation == "landlock"
    assert settings.target_repositories == (tmp_path / "secret-repo",)


def test_engines_read_their_own_prefix_and_the_contract_names() -> None:
    env = {"CTO_HARNESS_ALLOW_CASE": "1", "CTO_HARNESS_CASE_STAGE": "2",
           "CTO_HARNESS_CASE_BIN": "/x/ca", "CTO_HARNESS_CASE_TIMEOUT_SECONDS": "30",
           "CTO_HARNESS_CASE_MODEL_PROVIDER": "anthropic", "CTO_HARNESS_CASE_MODEL": "m",
           "CTO_HARNESS_CASE_MODEL_BASE_URL": "http://127.0.0.1:9/v1",
           "CTO_HARNESS_FAKE_TIMEOUT_SECONDS": "7"}
    case = CaseSettings.load(env)
    assert (case.allow, case.stage, case.bin, case.timeout_seconds) == ("1", "2", "/x/ca", 30)
    assert (case.model_provider, case.model, case.model_base_url) == (
        "anthropic", "m", "http://127.0.0.1:9/v1")
    assert case.sources["allow"] == "env CTO_HARNESS_ALLOW_CASE"
    assert FakeSettings.load(env).timeout_seconds == 7
    assert FakeSettings.load({"CTO_HARNESS_CASE_TIMEOUT_SECONDS": "30"}).timeout_seconds == 900
    # An empty variable is unset, as the shell's `VAR=` means.
    assert CaseSettings.load({"CTO_HARNESS_CASE_BIN": ""}).bin is None


def test_settings_never_read_the_process_environment_on_their_own(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTO_HARNESS_FAKE_TIMEOUT_SECONDS", "5")
    assert FakeSettings().timeout_seconds == 900  # only `load` reads an environment
    assert FakeSettings.load().timeout_seconds == 5


def test_the_sandbox_uid_range_is_read_and_checked(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "CTO_HARNESS_SANDBOX_UIDS": "70000-70009"}
    assert Settings.from_env(env).sandbox_uids == (70000, 70009)
    assert Settings.from_env({**env, "CTO_HARNESS_SANDBOX_UIDS": "70001"}).sandbox_uids == \
        (70001, 70001)
    for bad in ("0-5", "9-3", "root", "-1"):
        with pytest.raises(UsageError, match="CTO_HARNESS_SANDBOX_UIDS"):
            Settings.from_env({**env, "CTO_HARNESS_SANDBOX_UIDS": bad})
