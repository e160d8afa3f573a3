"""User configuration: `$CTO_HARNESS_HOME/config.toml`.

```toml
# Paths a provider must never be able to read (your real repositories, secrets, …).
target_repositories = ["/srv/git/payments", "/home/me/src/product"]
# Optional defaults of core settings (an environment variable overrides each):
# runs_dir = "/srv/cto-runs"          # CTO_HARNESS_RUNS_DIR
# isolation = "bwrap"                 # CTO_HARNESS_ISOLATION
# workspace_limit_mb = 2048           # CTO_HARNESS_WORKSPACE_LIMIT_MB
```

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
from cto_harness.fsutil import atomic_write_text

CONFIG_FILE = "config.toml"
ENV_TARGETS = "CTO_HARNESS_TARGET_REPOSITORIES"
KNOWN_KEYS = frozenset({"target_repositories", "runs_dir", "isolation", "workspace_limit_mb"})


def config_path(home: Path) -> Path:
    return home / CONFIG_FILE


def _check_target(raw: str, where: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise UsageError(f"{where}: target repository paths must be absolute, got {raw!r}")
    path = Path(os.path.normpath(path))
    if path == Path("/"):
        raise UsageError(f"{where}: '/' cannot be a target repository (nothing could run)")
    return path


def read_config(home: Path) -> dict[str, object]:
    path = config_path(home)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc
    if unknown := sorted(set(data) - KNOWN_KEYS):
        raise UsageError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})")
    targets = data.get("target_repositories", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise UsageError(f"{path}: target_repositories must be a list of path strings")
    return data


def _targets(config: dict[str, object]) -> list[str]:
    listed = config.get("target_repositories", [])
    return [str(t) for t in listed] if isinstance(listed, list) else []


def target_repositories(home: Path, environ: Mapping[str, str]) -> tuple[Path, ...]:
    """The configured target repositories: the config file's, then the environment's."""
    found: list[Path] = []
    for raw in _targets(read_config(home)):
        found.append(_check_target(raw, str(config_path(home))))
    for raw in (environ.get(ENV_TARGETS) or "").split(":"):
        if raw.strip():
            found.append(_check_target(raw.strip(), ENV_TARGETS))
    return tuple(dict.fromkeys(found))


def add_target(home: Path, raw: str) -> Path:
    """Append a path to config.toml's target_repositories (atomically); returns it."""
    path = _check_target(str(Path(raw).expanduser().absolute()), "add-target")
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
    home.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path(home), "\n".join(lines) + "\n")
    return path
