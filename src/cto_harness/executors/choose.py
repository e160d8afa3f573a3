"""`--executor NAME`: the executor a suite runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cto_harness.errors import UsageError

if TYPE_CHECKING:
    from cto_harness.core.executor import Executor

EXECUTORS = ("local", "ray")


def make_executor(name: str, *, address: str | None = None, retries: int | None = None) -> Executor:
    """The executor called `name`; a usage error for an unknown name, for Ray options given to
    the local executor, and for `ray` when Ray is not installed (naming the extra)."""
    if name == "local":
        if address is not None or retries is not None:
            raise UsageError("--address and --node-retries apply to --executor ray only")
        from cto_harness.core.suite import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        if retries is not None and retries < 0:
            raise UsageError("--node-retries must be 0 or more")
        from cto_harness.executors.ray_executor import RayExecutor, import_ray

        import_ray()  # a usage error naming the extra when Ray is missing
        return RayExecutor(address=address, retries=2 if retries is None else retries)
    raise UsageError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
