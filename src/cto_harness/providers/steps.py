"""One step of a provider's build or install (`bun install`, `npm pack`, ...), the same for every
distribution kind: run with a time limit and a private environment, its output logged under
`logs/` and digested, recorded as a `StepRecord`; a failure blocks with the log's last lines.
A step that runs the source's own code is confined (`StepConfinement`, sandbox/confined.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cto_harness.errors import Blocked, BlockerCode
from cto_harness.fsutil import sha256_file
from cto_harness.providers.report import StepRecord
from cto_harness.sandbox.confined import run_confined
from cto_harness.sandbox.process import DEFAULT_MAX_LOG_BYTES, run_process
from cto_harness.settings import Settings


@dataclass(frozen=True)
class StepConfinement:
    """Where a confined step may write (`work`, its only writable tree) and read besides the
    system (`readable`: the tool's own files), under whose settings (what they name is hidden)."""

    work: Path
    settings: Settings
    readable: list[Path] = field(default_factory=list)


def run_step(argv: Sequence[str], *, shown: Sequence[str], index: int, cwd: Path,
             env: Mapping[str, str], logs: Path, timeout: float,
             code: BlockerCode = BlockerCode.BUILD_FAILED, label: str | None = None,
             confine: StepConfinement | None = None) -> StepRecord:
    """Run `argv` (its program already resolved to a path); `shown` is how the step is named in
    records and messages (`["bun", "install"]`), `label` (default: `shown`) in its logs' names.
    With `confine`, as a sandbox uid with the host's network (a registry). `Blocked(code)` if
    it times out or exits non-zero."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label or " ".join(shown)).strip("-")[:40]
    out, err = logs / f"{index:02d}-{slug}.stdout.log", logs / f"{index:02d}-{slug}.stderr.log"
    if confine is None:
        result = run_process(list(argv), cwd=cwd, env=dict(env), stdout_path=out,
                             stderr_path=err, timeout_seconds=timeout)
    else:
        result = run_confined(list(argv), work=confine.work, cwd=cwd, env=env,
                              readable=confine.readable, stdout_path=out, stderr_path=err,
                              timeout_seconds=timeout, max_log_bytes=DEFAULT_MAX_LOG_BYTES,
                              settings=confine.settings, network=True,
                              file_size_limit=None).process
    if confine is not None and not result.tree_clean:
        # A process of the step outlived it and its uid's sweep: the build folder is not taken
        # back, and what is still running could change it after any check.
        raise Blocked(code, f"`{' '.join(shown)}` left processes running that the sandbox uid's "
                            f"sweep did not end (logs in {logs})")
    if result.timed_out or result.exit_code != 0:
        tail = err.read_text("utf-8", "replace").strip().splitlines()[-3:]
        why = f"exceeded {timeout}s" if result.timed_out else f"exited {result.exit_code}"
        raise Blocked(code, f"`{' '.join(shown)}` {why}: {' | '.join(tail)[-400:]} "
                            f"(logs in {logs})")
    return StepRecord(argv=list(shown), executable=argv[0], exit_code=result.exit_code,
                      timed_out=result.timed_out, duration_ms=result.duration_ms,
                      stdout_log=str(out), stderr_log=str(err), stdout_sha256=sha256_file(out),
                      stderr_sha256=sha256_file(err))


def log_digests(steps: Sequence[StepRecord]) -> dict[str, str]:
    """`logs/<file>` -> SHA-256 of every step's two logs (the build report's `log_digests`)."""
    digests: dict[str, str] = {}
    for step in steps:
        digests[f"logs/{Path(step.stdout_log).name}"] = step.stdout_sha256
        digests[f"logs/{Path(step.stderr_log).name}"] = step.stderr_sha256
    return digests


__all__ = ["StepConfinement", "log_digests", "run_step"]
