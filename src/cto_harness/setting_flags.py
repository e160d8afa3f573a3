"""The command-line flag of every setting a user sets per run: one table, read by the CLI (the
options of `run`, `suite` and `config show`) and by `settings.py` (a value a flag set is
recorded as `flag --x`). Plain data, no pydantic: the CLI builds its parser from it without
loading any settings model.

`scope` says whose setting a flag sets: the core's (`Settings`) or the chosen engine's own
(`<engine>.settings_model`, e.g. `--timeout` is `CTO_HARNESS_CASE_TIMEOUT_SECONDS` for Case and
`CTO_HARNESS_FAKE_TIMEOUT_SECONDS` for the fake). Values are checked by the settings models, in
one place, so a bad flag is the same usage error as a bad variable, naming the flag.
`tests/test_settings.py` holds that every field of every built-in settings model has its flag
here (or is environment-only, like Case's consent gates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["core", "engine"]


@dataclass(frozen=True)
class SettingFlag:
    flag: str  # --timeout
    field: str  # the settings model's field: timeout_seconds
    scope: Scope
    metavar: str
    help: str
    repeatable: bool = False  # given several times, each adds (target repositories)

    @property
    def dest(self) -> str:
        """The argparse destination: apart from every command's own options."""
        return f"setting_{self.scope}_{self.field}"


SETTING_FLAGS: tuple[SettingFlag, ...] = (
    SettingFlag("--home", "home", "core", "DIR",
                "durable state: signing key, provider store, admissions, suites "
                "(CTO_HARNESS_HOME; default $XDG_STATE_HOME/cto-harness)"),
    SettingFlag("--runs-dir", "runs_dir", "core", "DIR",
                "where run bundles go (CTO_HARNESS_RUNS_DIR; default HOME/harness-runs)"),
    SettingFlag("--isolation", "isolation", "core", "TIER",
                "auto (the strongest this machine has), bwrap, landlock or none; a forced tier "
                "the machine lacks blocks isolation_unavailable (CTO_HARNESS_ISOLATION)"),
    SettingFlag("--workspace-limit-mb", "workspace_limit_mb", "core", "MB",
                "the most the provider may write, per file and in total "
                "(CTO_HARNESS_WORKSPACE_LIMIT_MB; default 1024)"),
    SettingFlag("--target-repository", "target_repositories", "core", "PATH",
                "also hide this absolute path from the provider; repeatable, adds to "
                "config.toml's list and CTO_HARNESS_TARGET_REPOSITORIES", repeatable=True),
    SettingFlag("--sandbox-uids", "sandbox_uids", "core", "N-M",
                "the uids a harness running as root runs each provider as, one per run at a "
                "time (CTO_HARNESS_SANDBOX_UIDS; default 61100-61163)"),
    SettingFlag("--timeout", "timeout_seconds", "engine", "SECONDS",
                "the provider's wall-clock limit, whole seconds (every engine: "
                "CTO_HARNESS_<ENGINE>_TIMEOUT_SECONDS; default 900)"),
    SettingFlag("--model-provider", "model_provider", "engine", "NAME",
                "the model's provider, e.g. anthropic or openai; must be admitted by the "
                "provider's policy (case, pi: CTO_HARNESS_<ENGINE>_MODEL_PROVIDER)"),
    SettingFlag("--model", "model", "engine", "ID",
                "the model, admitted by the provider's policy "
                "(case, pi: CTO_HARNESS_<ENGINE>_MODEL)"),
    SettingFlag("--model-base-url", "model_base_url", "engine", "URL",
                "the model endpoint (a gateway) the admission names; an unadmitted URL blocks "
                "(case, pi: CTO_HARNESS_<ENGINE>_MODEL_BASE_URL)"),
    SettingFlag("--model-endpoint", "model_endpoint", "engine", "MODE",
                "who answers the model: live (default), scripted, replay or record "
                "(case: CTO_HARNESS_CASE_MODEL_ENDPOINT)"),
    SettingFlag("--model-script", "model_script", "engine", "SET",
                "with --model-endpoint scripted: the script set "
                "harness/model-scripts/<case>/SET/ (case: CTO_HARNESS_CASE_MODEL_SCRIPT; "
                "default happy)"),
    SettingFlag("--model-cassette", "model_cassette", "engine", "FILE",
                "with --model-endpoint replay: the cassette to serve "
                "(case: CTO_HARNESS_CASE_MODEL_CASSETTE)"),
    SettingFlag("--provider-bin", "bin", "engine", "PATH",
                "the admitted provider binary, re-hashed before it runs "
                "(case: CTO_HARNESS_CASE_BIN)"),
    SettingFlag("--admission", "admission", "engine", "SHA256",
                "which admitted install to run, by digest or unique prefix "
                "(pi: CTO_HARNESS_PI_ADMISSION; default the newest at the policy's version)"),
)


def flag_for(scope: Scope, field: str) -> str:
    """The flag that sets `field` of a `scope` settings model."""
    for flag in SETTING_FLAGS:
        if flag.scope == scope and flag.field == field:
            return flag.flag
    return "--" + field.replace("_", "-")


def flags_of(scope: Scope) -> tuple[SettingFlag, ...]:
    return tuple(f for f in SETTING_FLAGS if f.scope == scope)
