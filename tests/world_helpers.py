"""Where tests put what an attack must really reach: a folder the sandboxes do not make private
(/tmp and /var/tmp are a fresh tmpfs inside every sandbox that can mount one, so a world there
would look protected for the wrong reason), on the host's own file system, traversable by the
sandbox uid. Falls back to the temporary folder where it cannot be made (not root)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

WORLD_PARENT = Path("/var/lib/cto-harness-test-worlds")


def world_dir(prefix: str) -> Path:
    """A new folder (mode 0755) under WORLD_PARENT; the caller removes it."""
    with contextlib.suppress(OSError):
        WORLD_PARENT.mkdir(mode=0o755, exist_ok=True)
    parent = WORLD_PARENT if WORLD_PARENT.is_dir() else Path(tempfile.gettempdir())
    world = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    world.chmod(0o755)
    return world
