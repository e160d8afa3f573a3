"""Settings resolve flag > environment > config file > default and record where each value came
from; every engine reads only its own prefix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from cto_harness.config import add_target
from cto_harness.engines import BUILTIN_ENGINES, engine_class
from cto_harness.engines.case.engine import CaseEngine, CaseSettings
from cto_harness.engines.fake.engine import FakeEngine, FakeSettings
from cto_harness.errors import UsageError
from cto_harness.setting_flags import SETTING_FLAGS
from cto_harness.settings import Settings, SettingsBase


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


def test_a_config_file_no_parser_step_can_take_is_one_usage_error(tmp_path: Path) -> None:
    # Nested past the parser (a RecursionError was a traceback for every command), or not a
    # file at all (a FIFO would block every command).
    (tmp_path / "config.toml").write_text("runs_dir = " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(UsageError, match=r"config\.toml is not a readable TOML file"):
        Settings.from_env({"CTO_HARNESS_HOME": str(tmp_path)})
    # An empty runs_dir was the current folder (the environment's empty value means unset).
    (tmp_path / "config.toml").write_text('runs_dir = ""\n')
    with pytest.raises(UsageError, match=r"config\.toml: runs_dir is empty"):
        Settings.from_env({"CTO_HARNESS_HOME": str(tmp_path)})
    # A key the settings take from the file is a key the file may hold.
    (tmp_path / "config.toml").write_text('sandbox_uids = "62000-62009"\n')
    assert Settings.from_env({"CTO_HARNESS_HOME": str(tmp_path)}).sandbox_uids == (62000, 62009)
    (tmp_path / "config.toml").unlink()
    os.mkfifo(tmp_path / "config.toml")
    with pytest.raises(UsageError, match=r"config\.toml is not a readable TOML file"):
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


# --- flags and the config file's engine tables --------------------------------------------------


def _builtin_models() -> list[type[SettingsBase]]:
    return [Settings, *(engine_class(name).settings_model for name in BUILTIN_ENGINES)]


def test_every_setting_has_a_flag_unless_it_is_a_consent_read_from_the_environment() -> None:
    by_scope = {(f.scope, f.field): f.flag for f in SETTING_FLAGS}
    for model in _builtin_models():
        for field in model.model_fields:
            if field in model.ENV_ONLY:
                assert model.flag_name(field) is None
                continue
            assert (model.FLAG_SCOPE, field) in by_scope, f"{model.__name__}.{field} has no flag"
            assert model.flag_name(field) == by_scope[(model.FLAG_SCOPE, field)]
    # ... and no flag names a setting that no model has.
    fields = {(m.FLAG_SCOPE, f) for m in _builtin_models() for f in m.model_fields}
    assert set(by_scope) <= fields, set(by_scope) - fields
    assert set(CaseSettings.ENV_ONLY) == {"allow", "stage"}  # the contract's consent gates


def test_an_engine_setting_comes_from_flag_then_env_then_its_config_table(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[engine.case]\ntimeout_seconds = 1200\nmodel = "from-file"\nmodel_provider = "openai"\n'
        '[engine.fake]\ntimeout_seconds = 7\n')
    env = {"CTO_HARNESS_HOME": str(tmp_path), "CTO_HARNESS_CASE_MODEL": "from-env",
           "CTO_HARNESS_CASE_MODEL_PROVIDER": "anthropic"}
    case = CaseEngine().load_settings(env, flags={"model_provider": "from-flag"})
    assert (case.timeout_seconds, case.model, case.model_provider) == (1200, "from-env",
                                                                       "from-flag")
    assert case.sources["timeout_seconds"] == f"{tmp_path / 'config.toml'} [engine.case]: " \
                                              "timeout_seconds"
    assert case.sources["model"] == "env CTO_HARNESS_CASE_MODEL"
    assert case.sources["model_provider"] == "flag --model-provider"
    assert case.sources["bin"] == "default"
    assert FakeEngine().load_settings(env).timeout_seconds == 7  # each engine its own table
    assert FakeEngine().load_settings(env, flags={"timeout_seconds": "3"}).sources[
        "timeout_seconds"] == "flag --timeout"


@pytest.mark.parametrize("toml, message", [
    ('[engine.case]\nallow = "1"\n', "allow is read from the environment only"),
    ('[engine.case]\nstage = "2"\n', "stage is read from the environment only"),
    ('[engine.case]\ntimeout = 5\n', "unknown key 'timeout'"),
    ('[engine.case]\ntimeout_seconds = 0\n', "[engine.case]: timeout_seconds"),
    # Values that validated and then broke a run (an overflowing timestamp, rlimit), or a TOML
    # boolean taken as 1.
    ('[engine.case]\ntimeout_seconds = 99999999999999999999\n',
     "[engine.case]: timeout_seconds"),
    ('[engine.case]\ntimeout_seconds = true\n', "[engine.case]: timeout_seconds"),
    ('engine = 5\n', "[engine.<name>] tables"),
])
def test_a_bad_engine_table_is_a_usage_error_naming_file_and_key(tmp_path: Path, toml: str,
                                                                message: str) -> None:
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(UsageError) as caught:
        CaseEngine().load_settings({"CTO_HARNESS_HOME": str(tmp_path)})
    assert message in str(caught.value) and str(tmp_path / "config.toml") in str(caught.value)


def test_the_consent_gates_never_come_from_a_flag() -> None:
    with pytest.raises(UsageError, match="not a setting"):
        CaseSettings.load({}, flags={"allow": "1"})
    # The gate the environment gives is still read.
    assert CaseSettings.load({"CTO_HARNESS_ALLOW_CASE": "1"}).allow == "1"


def test_a_bad_flag_value_names_the_flag_not_the_variable() -> None:
    with pytest.raises(UsageError, match=r"^--timeout: must be a positive whole number"):
        FakeSettings.load({"CTO_HARNESS_FAKE_TIMEOUT_SECONDS": "5"}, flags={"timeout_seconds": "x"})
    with pytest.raises(UsageError, match=r"^--isolation: "):
        Settings.from_env({"HOME": "/nonexistent"}, flags={"isolation": "chroot"})
    with pytest.raises(UsageError, match=r"^CTO_HARNESS_WORKSPACE_LIMIT_MB: .*less than or eq"):
        Settings.from_env({"HOME": "/nonexistent",
                           "CTO_HARNESS_WORKSPACE_LIMIT_MB": "99999999999999999999"})


def test_a_gate_message_names_the_flag_beside_the_variable(harness_home: Path) -> None:
    """A value may come from a flag or its variable: a blocked run's message names both (a
    consent gate, read only from the environment, names only its variable)."""
    from conftest import HARNESS_ROOT
    from cto_harness.core.run import execute_run

    assert CaseSettings.setting_name("allow") == "CTO_HARNESS_ALLOW_CASE"
    environ = {"CTO_HARNESS_HOME": str(harness_home), "CTO_HARNESS_ALLOW_CASE": "1",
               "CTO_HARNESS_CASE_STAGE": "2", "PATH": "/usr/bin:/bin"}
    report = execute_run("r1-string-slugify", "case", harness_root=HARNESS_ROOT,
                         environ=environ).report
    (blocker,) = report.blockers
    assert blocker.code == "provider_unavailable"
    assert blocker.message.startswith("CTO_HARNESS_CASE_BIN (--provider-bin) is not set")


def test_target_repositories_from_a_flag_add_to_file_and_environment(tmp_path: Path) -> None:
    add_target(tmp_path, str(tmp_path / "from-file"))
    env = {"CTO_HARNESS_HOME": str(tmp_path),
           "CTO_HARNESS_TARGET_REPOSITORIES": str(tmp_path / "from-env")}
    settings = Settings.from_env(env, flags={"target_repositories": [str(tmp_path / "flag")]})
    assert settings.target_repositories == (tmp_path / "from-file", tmp_path / "from-env",
                                            tmp_path / "flag")
    assert "flag --target-repository" in settings.sources["target_repositories"]
    with pytest.raises(UsageError, match="--target-repository"):
        Settings.from_env(env, flags={"target_repositories": ["/"]})
    # What other processes get: the environment's list with the flag's paths added.
    assert Settings.variables_for({"target_repositories": [str(tmp_path / "flag")],
                                   "runs_dir": tmp_path / "r"}, env) == {
        "CTO_HARNESS_TARGET_REPOSITORIES": f"{tmp_path / 'from-env'}:{tmp_path / 'flag'}",
        "CTO_HARNESS_RUNS_DIR": str(tmp_path / "r")}


def test_flags_travel_as_the_variables_they_stand_for() -> None:
    assert CaseSettings.variables_for({"timeout_seconds": "30", "bin": "/x/ca", "model": None}) \
        == {"CTO_HARNESS_CASE_TIMEOUT_SECONDS": "30", "CTO_HARNESS_CASE_BIN": "/x/ca"}
    # Read back in another process, the flag's value is the one in force.
    env = {"CTO_HARNESS_CASE_TIMEOUT_SECONDS": "900"} | CaseSettings.variables_for(
        {"timeout_seconds": "30"})
    assert CaseSettings.load(env).timeout_seconds == 30


def test_the_sandbox_uid_range_is_read_and_checked(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "CTO_HARNESS_SANDBOX_UIDS": "70000-70009"}
    assert Settings.from_env(env).sandbox_uids == (70000, 70009)
    assert Settings.from_env({**env, "CTO_HARNESS_SANDBOX_UIDS": "70001"}).sandbox_uids == \
        (70001, 70001)
    for bad in ("0-5", "9-3", "root", "-1"):
        with pytest.raises(UsageError, match="CTO_HARNESS_SANDBOX_UIDS"):
            Settings.from_env({**env, "CTO_HARNESS_SANDBOX_UIDS": bad})


@pytest.mark.parametrize("value", ["[-1, -1]", "[5, 1]", "[0, 0]", "[true, 5]", "[1.5, 2]"])
def test_a_config_file_uid_list_is_held_to_the_variables_bounds(tmp_path: Path,
                                                                value: str) -> None:
    """TOML gives `[N, M]` as a list, which skipped the range check: [-1, -1] started a run
    whose sandbox kept root's uid (the canary caught it) and [5, 1] one that ended in a
    harness error, both after the run folder was made."""
    (tmp_path / "config.toml").write_text(f"sandbox_uids = {value}\n")
    with pytest.raises(UsageError, match=r"config\.toml: sandbox_uids"):
        Settings.from_env({"CTO_HARNESS_HOME": str(tmp_path)})
    (tmp_path / "config.toml").write_text("sandbox_uids = [62000, 62009]\n")
    assert Settings.from_env({"CTO_HARNESS_HOME": str(tmp_path)}).sandbox_uids == (62000, 62009)


@pytest.mark.parametrize("where", ["CTO_HARNESS_HOME", "CTO_HARNESS_RUNS_DIR",
                                   "CTO_HARNESS_TARGET_REPOSITORIES", "--runs-dir", "config"])
def test_a_tilde_user_without_a_home_is_a_usage_error(tmp_path: Path, where: str) -> None:
    """pathlib's expanduser raises RuntimeError for `~nosuchuser`: every command ended with
    exit 3 (a harness error) instead of 64."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTO_HARNESS_")}
    env |= {"CTO_HARNESS_HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT / "src")}
    args = ["config", "show"]
    missing = "~cto-harness-no-such-user/x"
    if where == "--runs-dir":
        args += [where, missing]
    elif where == "config":
        (tmp_path / "config.toml").write_text(f'runs_dir = "{missing}"\n')
    else:
        env[where] = missing
    proc = subprocess.run([sys.executable, "-m", "cto_harness", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 64, proc.stderr
    assert "no such user" in proc.stderr
