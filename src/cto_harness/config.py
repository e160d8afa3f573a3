"""User configuration: `$CTO_HARNESS_HOME/config.toml`.

```toml
# Paths a provider must never be able to read (your real repositories, secrets, …).
target_repositories = ["/srv/git/payments", "/home/me/src/product"]
# Optional defaults of core settings (an environment variable overrides each):
# runs_dir = "/srv/cto-runs"          # CTO_HARNESS_RUNS_DIR
# isolation = "bwrap"                 # CTO_HARNESS_ISOLATION
# workspace_limit_mb = 2048           # CTO_HARNESS_WORKSPACE_LIMIT_MB
# An engine's own settings, by field name (an environment variable or a flag overrides each):
# [engine.case]
# timeout_seconds = 1800              # CTO_HARNESS_CASE_TIMEOUT_SECONDS, --timeout
# model_provider = "anthropic"        # CTO_HARNESS_CASE_MODEL_PROVIDER, --model-provider
```

Case's consent gates (`CTO_HARNESS_ALLOW_CASE`, `CTO_HARNESS_CASE_STAGE`) are read from the
environment only: a file cannot give them.

`CTO_HARNESS_TARGET_REPOSITORIES` (paths separated by `:`) adds to the file's list; it never
removes from it, so an environment cannot make a run see less hidden than the file says. Every
configured path is hidden from the provider by the isolation (bwrap: an empty tmpfs over it;
Landlock: left out of the read allow-list), probed by the canary, and scanned for in the task
contract.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from cto_harness.errors import UsageError
from cto_harness.fsutil import atomic_write_text, read_regular

CONFIG_FILE = "config.toml"
ENV_TARGETS = "CTO_HARNESS_TARGET_REPOSITORIES"
KNOWN_KEYS = frozenset({"target_repositories", "runs_dir", "isolation", "workspace_limit_mb",
                        "sandbox_uids", "engine"})
ENGINE_TABLE = "engine"


def config_path(home: Path) -> Path:
    return home / CONFIG_FILE


def expand_user(raw: str | Path, where: str) -> Path:
    """`raw` with `~` or `~user` expanded. A user without a home is a usage error naming where
    the path came from (pathlib raises RuntimeError, which ended a command as exit 3)."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:
        raise UsageError(f"{where}: cannot expand {str(raw)!r}: no such user or home") from None


def check_target(raw: str, where: str) -> Path:
    path = expand_user(raw, where)
    if not path.is_absolute():
        raise UsageError(f"{where}: target repository paths must be absolute, got {raw!r}")
    path = Path(os.path.normpath(path))
    if path == Path("/"):
        raise UsageError(f"{where}: '/' cannot be a target repository (nothing could run)")
    return path


CONFIG_CAP = 1 << 20  # a settings file: far below this


def read_config(home: Path) -> dict[str, object]:
    """The home's config.toml (the user names the home, so a link to it is followed), read with
    a bound; anything that does not parse, nests past the parser or is not a file is one usage
    error naming the file."""
    path = config_path(home)
    if not os.path.lexists(path):
        return {}
    try:
        data = tomllib.loads(read_regular(path, CONFIG_CAP, follow_link=True).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError, OSError) as exc:
        raise UsageError(f"{path} is not a readable TOML file: {exc}") from exc
    if unknown := sorted(set(data) - KNOWN_KEYS):
        raise UsageError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})")
    if empty := sorted(k for k, v in data.items() if v == ""):
        # An empty runs_dir was the current folder (where `runs clean` then worked); the
        # environment's empty value means unset, and so does a line left out here.
        raise UsageError(f"{path}: {empty[0]} is empty (leave the line out for the default)")
    targets = data.get("target_repositories", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise UsageError(f"{path}: target_repositories must be a list of path strings")
    engines = data.get(ENGINE_TABLE, {})
    if not isinstance(engines, dict) or not all(isinstance(t, dict) for t in engines.values()):
        raise UsageError(f"{path}: [{ENGINE_TABLE}.<name>] tables hold an engine's settings")
    return data


def engine_tables(home: Path) -> dict[str, dict[str, object]]:
    """config.toml's `[engine.<name>]` tables: engine name -> its settings by field name."""
    tables = read_config(home).get(ENGINE_TABLE, {})
    return {str(k): dict(v) for k, v in tables.items()} if isinstance(tables, dict) else {}


def engine_table_origin(home: Path, engine: str) -> str:
    return f"{config_path(home)} [{ENGINE_TABLE}.{engine}]"


def _targets(config: dict[str, object]) -> list[str]:
    listed = config.get("target_repositories", [])
    return [str(t) for t in listed] if isinstance(listed, list) else []


def target_repositories(home: Path, environ: Mapping[str, str]) -> tuple[Path, ...]:
    """The configured target repositories: the config file's, then the environment's."""
    found: list[Path] = []
    for raw in _targets(read_config(home)):
        found.append(check_target(raw, str(config_path(home))))
    for raw in (environ.get(ENV_TARGETS) or "").split(":"):
        if raw.strip():
            found.append(check_target(raw.strip(), ENV_TARGETS))
    return tuple(dict.fromkeys(found))


def add_target(home: Path, raw: str) -> Path:
    """Append a path to config.toml's target_repositories (atomically); returns it."""
    path = check_target(str(expand_user(raw, "add-target").absolute()), "add-target")
    data = read_config(home)
    targets = _targets(data)
    if str(path) not in targets:
        targets.append(str(path))
    lines = ["# cto-harness configuration (see `cto-harness config show`)."]
    # The other settings of the file are kept as they were.
    lines += [f"{key} = {json.dumps(value)}" for key, value in data.items()
              if key != "target_repositories" and isinstance(value, str | int)]
    lines += ["# Paths a provider must never be able to read.", "target_repositories = ["]
    lines += [f"  {json.dumps(t)}," for t in targets]
    lines.append("]")
    # Tables last (TOML: a key after a table header belongs to the table).
    for engine, table in engine_tables(home).items():
        lines.append(f"\n[{ENGINE_TABLE}.{json.dumps(engine)}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()
                  if isinstance(value, str | int)]
    home.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path(home), "\n".join(lines) + "\n")
    return path
