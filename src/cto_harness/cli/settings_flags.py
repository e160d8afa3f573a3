"""The settings flags of `run`, `suite` and `config show` (the table is `setting_flags.py`), and
their resolution: flag > environment > config file > default, decided by the settings models'
one `load` (settings.py), never here.

A run's other processes (suite workers, cluster nodes, the pipeline reading its environment)
get what the flags set as the variables those flags stand for (`variables_for`): the command's
environment with those variables replaced. So a value set by a flag wins everywhere, and a bad
flag value is a usage error naming the flag, raised before anything runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cto_harness.setting_flags import SETTING_FLAGS, SettingFlag, flags_of

if TYPE_CHECKING:
    from cto_harness.engines.base import EngineSettings
    from cto_harness.settings import Settings

_PATH_METAVARS = frozenset({"DIR", "PATH", "FILE"})


def _absolute(value: str) -> str:
    # Workers and nodes may run elsewhere: a path means what it means where it was typed.
    from cto_harness.config import expand_user

    return str(expand_user(value, "a path flag").absolute())


def add_setting_flags(parser: argparse.ArgumentParser,
                      only: tuple[str, ...] | None = None) -> None:
    """Every setting's flag (or those of the fields `only` names), in a group of their own
    (`--help` lists them apart)."""
    group = parser.add_argument_group(
        "settings", "each overrides its environment variable, which overrides config.toml "
        "(`cto-harness config show` prints the effective values and where each came from); an "
        "engine setting applies to the chosen engine(s) that have it")
    for flag in SETTING_FLAGS:
        if only is not None and flag.field not in only:
            continue
        group.add_argument(flag.flag, dest=flag.dest, metavar=flag.metavar, help=flag.help,
                           action="append" if flag.repeatable else "store",
                           type=_absolute if flag.metavar in _PATH_METAVARS else str)


def _given(args: argparse.Namespace, flags: Sequence[SettingFlag]) -> dict[str, Any]:
    return {f.field: value for f in flags if (value := getattr(args, f.dest, None)) is not None}


@dataclass(frozen=True)
class Resolved:
    settings: Settings  # the core's
    engines: dict[str, EngineSettings]  # each chosen engine's own
    environ: dict[str, str]  # this command's environment, with the flags' variables set
    core_flags: dict[str, Any]
    engine_flags: dict[str, Any]


def resolve(args: argparse.Namespace, engines: Sequence[str] | None = None,
            environ: Mapping[str, str] | None = None) -> Resolved:
    """The settings this command runs with. `engines`: the chosen engines (None: every engine,
    as `config show` shows them). An engine flag no chosen engine has is a usage error."""
    from cto_harness.engines import engine_names, get_engine
    from cto_harness.errors import UsageError
    from cto_harness.settings import Settings

    env = dict(os.environ if environ is None else environ)
    core_flags = _given(args, flags_of("core"))
    engine_flags = _given(args, flags_of("engine"))
    settings = Settings.from_env(env, flags=core_flags)
    _check_engine_tables(settings.home, engine_names())
    chosen = list(engines) if engines is not None else engine_names()
    overlay = Settings.variables_for(core_flags, env)
    loaded: dict[str, EngineSettings] = {}
    used: set[str] = set()
    for name in chosen:
        engine = get_engine(name)
        fields = engine.settings_model.model_fields
        mine = {k: v for k, v in engine_flags.items() if k in fields}
        used |= set(mine)
        loaded[name] = engine.load_settings(env, flags=mine, home=settings.home)
        overlay |= engine.settings_model.variables_for(mine, env)
    for field in sorted(set(engine_flags) - used):
        flag = next(f.flag for f in flags_of("engine") if f.field == field)
        raise UsageError(f"{flag}: the {', '.join(chosen)} engine{'s' if len(chosen) > 1 else ''}"
                         f" {'have' if len(chosen) > 1 else 'has'} no such setting")
    return Resolved(settings=settings, engines=loaded, environ=env | overlay,
                    core_flags=core_flags, engine_flags=engine_flags)


def _check_engine_tables(home: Path, known: Sequence[str]) -> None:
    from cto_harness.config import ENGINE_TABLE, config_path, engine_tables
    from cto_harness.errors import UsageError

    for name in engine_tables(home):
        if name not in known:
            raise UsageError(f"{config_path(home)}: [{ENGINE_TABLE}.{name}] names no engine "
                             f"(known: {', '.join(known)})")


def applied(resolved: Resolved) -> contextlib.AbstractContextManager[None]:
    """This process's environment as `resolved` says, for the processes it starts (suite
    workers) and the executors that read it (a cluster driver); restored afterwards."""
    from cto_harness.settings import environment_set

    return environment_set({k: v for k, v in resolved.environ.items() if os.environ.get(k) != v})


# The core settings a cluster node decides for itself (its runs folder, its isolation, ...).
NODE_SETTINGS = ("runs_dir", "isolation", "workspace_limit_mb", "target_repositories")


def refuse_node_settings(resolved: Resolved, why: str) -> None:
    """Flags of core settings that would not reach where the runs happen: a usage error."""
    from cto_harness.errors import UsageError

    if given := [f.flag for f in flags_of("core")
                 if f.field in NODE_SETTINGS and f.field in resolved.core_flags]:
        raise UsageError(f"{', '.join(given)}: {why}")
