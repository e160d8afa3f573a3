"""What to launch: one process, as the sandbox and the process runner take it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Launch:
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    timeout_seconds: float
    # RLIMIT_FSIZE for the process (None: the run pipeline sets the workspace limit).
    file_size_limit: int | None = None
    # True when the provider must reach a network endpoint (its model): the sandbox then lets it
    # reach `endpoint` through the harness's proxy (sandbox/netproxy.py), and nothing else.
    # Everything else runs with loopback only.
    network: bool = False
    endpoint: str | None = None
    # The provider's own program (an npm package's installed tree and runtime, hard-linked from
    # the admitted store): read and executed, never written and never handed to the sandbox uid
    # (a hard link's owner is its store inode's owner).
    readable: tuple[Path, ...] = ()
