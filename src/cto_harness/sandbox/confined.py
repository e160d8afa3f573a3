"""One confined command outside a run: the identity probe of a candidate provider binary, and
each step of a provider's build.

`ca --help` of a binary that is not admitted yet is untrusted code like any provider run: it runs
in the strongest tier the machine has (or `CTO_HARNESS_ISOLATION`), as a sandbox uid of its own,
with no network at all, the harness's state and HOME hidden, only its private folder writable,
and a time limit; every process of that uid is killed afterwards. A build step (the source's own
scripts: `bun install` runs its lifecycle scripts, `bun run build:binary` its `prebuild`) is
confined the same way, with the host's network (it fetches from the package registry) and no
limit on file size (it writes the binary): the signing key, the registry and the store stay out
of its reach.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cto_harness.sandbox import users
from cto_harness.sandbox.isolation import Confinement, _interpreter_paths, choose_tier
from cto_harness.sandbox.probe import probe
from cto_harness.sandbox.process import SANDBOX_TASK_LIMIT, ProcessResult, run_process
from cto_harness.settings import Settings

# No file the probe writes may grow past this (EFBIG): `--help` writes nothing it needs to.
PROBE_FILE_SIZE_LIMIT = 16 << 20


@dataclass
class ConfinedResult:
    process: ProcessResult
    isolation: dict[str, Any] = field(default_factory=dict)


def run_confined(
    argv: Sequence[str], *, work: Path, cwd: Path, env: Mapping[str, str], readable: list[Path],
    stdout_path: Path, stderr_path: Path, timeout_seconds: float, max_log_bytes: int,
    settings: Settings | None = None, network: bool = False,
    file_size_limit: int | None = PROBE_FILE_SIZE_LIMIT,
) -> ConfinedResult:
    """Run `argv` confined; `work` (which holds `cwd` and any HOME) is its only writable tree,
    `readable` what it may read besides the system and the interpreter. `settings` are the
    caller's (a run's, with its flags): what they name is hidden, as from the run itself.
    `network` gives it the host's network (a build step's registry)."""
    settings = settings or Settings.from_env()
    found = probe()
    tier, reason = choose_tier(settings.isolation, found)  # Blocked isolation_unavailable
    users.harden_harness()
    user = users.acquire(settings.sandbox_uids)  # Blocked sandbox_user_unavailable
    try:
        users.hand_over([work], user)
        # The harness's own HOME (`env` holds the probe's private one): an operator's files.
        home = os.environ.get("HOME") or str(Path.home())
        hidden = [Path(home), settings.home, settings.runs_dir, *settings.target_repositories]
        conf = Confinement(
            tier=tier, hidden=list(dict.fromkeys(Path(os.path.abspath(p)) for p in hidden)),
            readonly=[*_interpreter_paths(), *readable], writable=[work], cwd=cwd, probe=found,
            user=user, share_network=network, scratch_bytes=settings.workspace_limit_bytes,
        )
        result = run_process(
            [*conf.prefix(), *argv], cwd=cwd, env=env, stdout_path=stdout_path,
            stderr_path=stderr_path, timeout_seconds=timeout_seconds,
            max_log_bytes=max_log_bytes, file_size_limit=file_size_limit,
            task_limit=SANDBOX_TASK_LIMIT,
        )
        killed, clean = users.sweep(user.uid) if user.separate else ([], True)
        result.leftover_processes += killed
        result.tree_clean = result.tree_clean and clean
        if clean:
            users.take_back([work], user)
        info = {"tier": tier, "reason": reason, "uid": user.uid, "network": conf.network_mode,
                "namespaces": conf.namespaces, "tree_clean": result.tree_clean}
        return ConfinedResult(result, info)
    finally:
        user.release()
