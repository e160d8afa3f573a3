"""`cto-harness suite --executor ray`: one Ray task per (case, repeat), on whichever node gets it.

The driver (this process) connects to a Ray cluster (`--address`, else `RAY_ADDRESS`, else a
private single-node Ray started here), puts the suite's payloads into the object store once and
submits at most `--jobs` tasks at a time (default: the cluster's CPUs; each task asks for 1 CPU):

* the harness folder (the suite's cases and the provider policy), as a tar, with its digest;
* for `--engine case`, the admitted provider binary: read from a private copy of
  `CTO_HARNESS_CASE_BIN`, hashed, looked up in this machine's admission registry (an unadmitted
  binary is a usage error here, before anything is submitted), shipped as bytes with its digest and
  admission record. No node is ever given a path to trust.

Each task (`ray_node.run_task`) runs the ordinary pipeline on its node and returns the bundle as
a tar plus the node's public key. The driver unpacks it (hostile-archive rules, `archive.py`) into
the bundle path the suite chose, keeps the key as `keys/<keyid>.pub` in the suite folder, and
hands both to the suite, which verifies digests and signature before suite.json counts the run.

A task whose node died or whose worker was killed (`NodeDiedError`, `WorkerCrashedError`, a lost
result) is `node_lost`; it is submitted again, up to `--node-retries` more times, and every lost
attempt stays listed in the run's `attempts`. Ray's own retries are off (`max_retries=0`) so that
every loss is seen and counted here. Ctrl-C or SIGTERM cancels the running tasks (each node's
pipeline then seals an `interrupted` bundle) and waits for them up to the suite's grace.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

from cto_harness import __version__
from cto_harness.core.executor import Finished, SuiteHooks, SuitePlan
from cto_harness.errors import BlockerCode, UsageError
from cto_harness.executors.archive import ArchiveRejected, pack_tree, unpack_into_new
from cto_harness.executors.ray_node import BINARY_FIELD, engine_variables, run_task
from cto_harness.fsutil import sha256_bytes

if TYPE_CHECKING:
    from cto_harness.core.executor import Job

RAY_EXTRA_HINT = "pip install 'cto-harness[ray]'"
STOP_GRACE_SECONDS = 60.0
_TICK = 0.2
# How often the driver checks that some node with a CPU is still alive while tasks wait.
_CLUSTER_CHECK_SECONDS = 2.0


def import_ray() -> ModuleType:
    """Ray, or a usage error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed: "
                         f"{RAY_EXTRA_HINT}") from None
    return ray


@dataclass
class _Attempt:
    job: Job
    number: int
    submitted: float
    lost: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Stop:
    requested: bool = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


class RayExecutor:
    name = "ray"

    def __init__(self, *, address: str | None = None, retries: int = 2) -> None:
        self.address = address
        self.retries = retries
        self.ray = import_ray()
        # Figures for the benchmark, one per run that came home: submit-to-result latency at the
        # driver, the task's and the run's own time on the node, unpacking at the driver.
        self.timings: list[dict[str, float]] = []

    # --- connection and payloads ------------------------------------------------------------

    def _connect(self, plan: SuitePlan) -> None:
        """Connect to the cluster, or start a private single-node Ray when no address is known."""
        ray = self.ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                                   "configure_logging": False}
        if address is None:
            ray.init(num_cpus=plan.jobs or os.cpu_count() or 1, include_dashboard=False,
                     **options)
            return
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot connect to the Ray cluster at {address}: {exc}") from None

    def _cluster_cpus(self) -> float:
        return float(self.ray.cluster_resources().get("CPU", 0.0))

    def _provider_payload(self, engine: str, harness_root: Path
                          ) -> tuple[dict[str, Any] | None, bytes | None]:
        """({admission record, binary name}, bytes) of the binary the suite's engine runs, or
        (None, None) for an engine without a provider (the fake)."""
        from cto_harness.engines import engine_class
        from cto_harness.providers.policy import default_policy_path, load_policy
        from cto_harness.providers.registry import lookup_admission
        from cto_harness.settings import Settings

        cls = engine_class(engine)
        _names, variable = engine_variables(engine)
        if cls.provider is None or variable is None:
            return None, None
        given = cls().load_settings(os.environ).model_dump().get(BINARY_FIELD)
        if not given:
            return None, None  # each run blocks provider_unavailable on its node, as locally
        settings = Settings.from_env()
        with tempfile.TemporaryDirectory(prefix="cto-ray-provider-") as tmp:
            copy = Path(tmp) / "provider"
            try:
                data = Path(given).read_bytes()
            except OSError as exc:
                raise UsageError(f"{variable}: cannot read {given}: {exc.strerror}") from None
            copy.write_bytes(data)
            record = lookup_admission(settings, copy, cls.provider)
        if record is None or record.sha256 != sha256_bytes(data):
            raise UsageError(
                f"{given} (sha256 {sha256_bytes(data)}) is not admitted on this machine: the Ray "
                "executor ships only admitted providers (`cto-harness provider build|admit`)")
        binary = load_policy(default_policy_path(harness_root, cls.provider)).binary
        return {"record": record.model_dump(mode="json"), "binary": binary}, data

    # --- the loop -------------------------------------------------------------------------

    def execute(self, todo: list[Job], plan: SuitePlan, hooks: SuiteHooks) -> bool:
        if not todo:
            return False
        ray = self.ray
        # Usage errors (an unadmitted binary) come before connecting.
        provider, binary = self._provider_payload(plan.engine, plan.harness_root)
        harness_tar = _harness_archive(plan)
        # Ray prints cluster events (a node died, ...) on stdout; stdout is the suite's (--json).
        sys.stdout.flush()
        saved_stdout = os.dup(1)
        os.dup2(2, 1)
        try:
            self._connect(plan)
        except BaseException:
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
            raise
        stop = _Stop()
        handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            cpus = self._cluster_cpus()
            if cpus < 1:
                raise UsageError("the Ray cluster offers no CPU to run on")
            limit = plan.jobs or int(cpus)
            harness_ref = ray.put(harness_tar)
            provider_ref = ray.put(binary) if binary is not None else None
            hooks.note(f"suite: ray cluster with {cpus:g} CPUs, {len(ray.nodes())} nodes; "
                       f"{limit} runs at once")
            # SPREAD: runs are heavy and alike; spreading them evens the load over the nodes.
            remote = ray.remote(run_task).options(num_cpus=1, max_retries=0,
                                                  retry_exceptions=False,
                                                  scheduling_strategy="SPREAD")
            base_spec = {
                "harness_version": __version__, "engine": plan.engine,
                "harness_digest": sha256_bytes(harness_tar),
                "suite_token": f"{plan.suite_dir.name}-{uuid.uuid4().hex[:8]}",
                "suite_settings": {k: v for k in engine_variables(plan.engine)[0]
                                   if (v := os.environ.get(k))},
                "provider": provider,
                "challenge": plan.challenge,
            }
            pending: dict[Any, _Attempt] = {}
            queue = [_Attempt(job, 1, 0.0) for job in todo]

            def submit(attempt: _Attempt) -> None:
                job = attempt.job
                if attempt.number == 1:
                    hooks.place(job)
                    hooks.started(job)
                job.started = attempt.submitted = time.monotonic()
                spec = {**base_spec, "case_id": job.case_id, "repeat": job.repeat,
                        "attempt": attempt.number}
                ref = remote.remote(spec, [harness_ref],
                                    [provider_ref] if provider_ref is not None else [])
                pending[ref] = attempt

            cancelled = False
            deadline: float | None = None
            next_check = time.monotonic() + _CLUSTER_CHECK_SECONDS
            while queue or pending:
                while queue and len(pending) < limit and not stop.requested:
                    submit(queue.pop(0))
                if stop.requested and not cancelled:
                    cancelled = True
                    deadline = time.monotonic() + STOP_GRACE_SECONDS
                    for ref in pending:
                        ray.cancel(ref, force=False)
                if stop.requested and not pending:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    for ref, attempt in list(pending.items()):
                        ray.cancel(ref, force=True)
                        hooks.finished(attempt.job, Finished(run_dir=None, stopping=True,
                                                             extra=_extra(attempt)))
                    pending.clear()
                    break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=_TICK)
                for ref in ready:
                    attempt = pending.pop(ref)
                    retry = self._settle(ref, attempt, plan, hooks, stop.requested)
                    if retry is not None:
                        queue.insert(0, retry)
                if time.monotonic() > next_check and pending:
                    next_check = time.monotonic() + _CLUSTER_CHECK_SECONDS
                    if self._cluster_cpus() < 1:
                        self._abandon(pending, queue, hooks, "no live node with a CPU is left")
                        break
                hooks.live([a.job for a in pending.values()])
            return stop.requested
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            ray.shutdown()  # also ends a private Ray started by _connect
            sys.stdout.flush()
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)

    def _abandon(self, pending: dict[Any, _Attempt], queue: list[_Attempt], hooks: SuiteHooks,
                 why: str) -> None:
        for ref, attempt in list(pending.items()):
            self.ray.cancel(ref, force=True)
            attempt.lost.append({"attempt": attempt.number, "error": why})
            hooks.finished(attempt.job, Finished(run_dir=None, blocker=BlockerCode.NODE_LOST, message=why,
                                                 extra=_extra(attempt)))
        pending.clear()
        for attempt in queue:
            if attempt.number > 1:  # already placed and announced; the others stay pending
                hooks.finished(attempt.job, Finished(run_dir=None, blocker=BlockerCode.NODE_LOST,
                                                     message=why, extra=_extra(attempt)))
        queue.clear()

    def _settle(self, ref: Any, attempt: _Attempt, plan: SuitePlan, hooks: SuiteHooks,
                stopping: bool) -> _Attempt | None:
        """Hand one finished task to the suite; returns the next attempt when it was lost and
        retries remain."""
        ray = self.ray
        job = attempt.job
        exceptions = ray.exceptions
        try:
            result = ray.get(ref)
            latency_ms = (time.monotonic() - attempt.submitted) * 1000
        except exceptions.TaskCancelledError:
            hooks.finished(job, Finished(run_dir=None, stopping=True, extra=_extra(attempt)))
            return None
        except (exceptions.NodeDiedError, exceptions.WorkerCrashedError,
                exceptions.ObjectLostError, exceptions.LocalRayletDiedError) as exc:
            attempt.lost.append({"attempt": attempt.number, "error": _first_line(exc)})
            if attempt.number <= self.retries and not stopping:
                hooks.note(f"suite: {job.case_id} #{job.repeat} lost its node "
                           f"(attempt {attempt.number}); retrying")
                return _Attempt(job, attempt.number + 1, 0.0, attempt.lost)
            hooks.finished(job, Finished(run_dir=None, blocker=BlockerCode.NODE_LOST,
                                         message=_first_line(exc), extra=_extra(attempt)))
            return None
        except exceptions.RayError as exc:  # the task itself raised on its node
            hooks.finished(job, Finished(run_dir=None, blocker=BlockerCode.NODE_ERROR,
                                         message=_first_line(exc), extra=_extra(attempt)))
            return None
        if not isinstance(result, dict):  # whatever a node sends back is checked, never trusted
            hooks.finished(job, Finished(run_dir=None, blocker=BlockerCode.BUNDLE_REJECTED,
                                         message=f"the node answered a {type(result).__name__}, "
                                                 "not a result", extra=_extra(attempt)))
            return None
        node = result.get("node")
        extra = {**_extra(attempt), "node": node if _plain_record(node) else None}
        if not result.get("ok"):
            message = result.get("message")
            hooks.finished(job, Finished(run_dir=None, blocker=_node_blocker(result.get("blocker")),
                                         message=str(message)[:500] if message else None,
                                         extra=extra))
            return None
        from cto_harness.errors import SignatureInvalid
        from cto_harness.evidence.suite_signers import store_public_key

        assert job.run_dir is not None
        began = time.perf_counter()
        try:
            _keyid, key_file = store_public_key(plan.suite_dir, result["public_key"])
            unpacked = unpack_into_new(result["archive"], job.run_dir.parent)
            os.rename(unpacked, job.run_dir)
        except (ArchiveRejected, SignatureInvalid, ValueError, OSError, TypeError,
                KeyError) as exc:  # whatever a node sends back is checked, never trusted
            hooks.finished(job, Finished(run_dir=None, blocker=BlockerCode.BUNDLE_REJECTED,
                                         message=str(exc), extra=extra))
            return None
        finally:
            timing = result.get("timing")
            self.timings.append({"latency_ms": latency_ms,
                                 "unpack_ms": (time.perf_counter() - began) * 1000,
                                 **({k: v for k, v in timing.items() if isinstance(k, str)
                                     and type(v) in (int, float)}
                                    if isinstance(timing, dict) else {})})
        hooks.finished(job, Finished(run_dir=job.run_dir, public_key=key_file, extra=extra))
        return None


def _plain_record(value: object) -> bool:
    """A node's self-description as suite.json keeps it: a flat object of short strings and
    numbers (anything else is dropped, never written into the suite's records)."""
    return isinstance(value, dict) and len(value) <= 32 and all(
        isinstance(k, str) and len(k) <= 64
        and (type(v) in (int, float, bool) or (isinstance(v, str) and len(v) <= 256))
        for k, v in value.items())


def _node_blocker(code: object) -> BlockerCode:
    """A node's own refusal, named by it; anything but a code we know is `node_error`."""
    try:
        return BlockerCode(str(code))
    except ValueError:
        return BlockerCode.NODE_ERROR


def _extra(attempt: _Attempt) -> dict[str, Any]:
    return {"attempts": attempt.number, "lost_attempts": list(attempt.lost)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def _harness_archive(plan: SuitePlan) -> bytes:
    """The suite's fixture cases and the provider policies, as one tar."""
    root = plan.harness_root
    files: list[str] = []
    for folder in [*(Path("evals", "cases", c) for c in plan.case_ids), Path("providers")]:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.is_symlink():
                raise UsageError(f"{path} is a symlink: the Ray executor ships regular files only")
            if path.is_file():
                files.append(path.relative_to(root).as_posix())
    try:
        return pack_tree(root, files)
    except ArchiveRejected as exc:
        raise UsageError(f"cannot ship the harness folder: {exc}") from None
