"""Identity checks: is this source the provider the policy names, and is this binary its
executable? Both read their rules from the policy (`[distribution.identity]`, `[binary_identity]`).

The binary probe is the only way the harness ever executes an unadmitted provider binary: exactly
`<binary> --help`, confined like a provider run (`sandbox/confined.py`: a sandbox uid, no network,
HOME and the harness's state hidden), with a private `HOME`, `XDG_*`, `TMPDIR` and every folder
variable the policy lists (Case: `CASE_DATA_DIR`, `PI_CODING_AGENT_DIR`; even `--help` writes files
there), stdin `/dev/null`, no credentials in its environment and a time limit. It never runs
`--version` (for Case that is not a flag, and it falls through to Case's default run path). The run
pipeline calls `probe_binary_identity` again at run start, on the copy it will execute.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from pydantic import Field

from cto_harness.contracts import StrictModel
from cto_harness.errors import Blocked, BlockerCode
from cto_harness.fsutil import resolve_within, sha256_bytes
from cto_harness.providers.policy import PROBE_PRIVATE_DIRS, ProviderPolicy
from cto_harness.providers.source import SourceIdentity
from cto_harness.sandbox.confined import run_confined
from cto_harness.settings import Settings

PROBE_ARGS = ("--help",)
_PROBE_OUTPUT_CAP = 1 << 20
_EXCERPT_CHARS = 600
# Passed through to the probe when present; nothing else (in particular no credential) is.
_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "TZ")


class SourceIdentityEvidence(StrictModel):
    manifest: str
    manifest_sha256: str
    fields: dict[str, Any] = Field(default_factory=dict, description="the values found")
    bin: Any = None
    bin_target: str | None = None


class IdentityMismatch(Blocked):
    """`identity_mismatch`, carrying the probe's evidence for the caller's report."""

    def __init__(self, message: str, evidence: IdentityEvidence) -> None:
        super().__init__(BlockerCode.IDENTITY_MISMATCH, message)
        self.evidence = evidence


class IdentityEvidence(StrictModel):
    binary: str
    argv: list[str]
    exit_code: int | None
    timed_out: bool
    duration_ms: int
    probed_at: str
    markers_found: list[str] = Field(default_factory=list)
    markers_missing: list[str] = Field(default_factory=list)
    commands_found: list[str] = Field(default_factory=list)
    commands_missing: list[str] = Field(default_factory=list)
    help_sha256: str
    help_bytes: int
    help_excerpt: str
    # How the probe was confined (tier, sandbox uid, network): an unadmitted binary never runs
    # with the harness's privileges.
    confinement: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return (
            self.exit_code == 0
            and not self.timed_out
            and not self.markers_missing
            and not self.commands_missing
        )

    def digest(self) -> str:
        """SHA-256 of the evidence's canonical JSON (what an admission record points at)."""
        return sha256_bytes(
            json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()
        )


def check_executable(path: Path, *, missing_code: str = BlockerCode.DIST_MISSING) -> None:
    """A regular file with an execute bit, else blocked (`missing_code` / `not_executable`)."""
    try:
        st = path.stat()
    except OSError:
        raise Blocked(missing_code, f"no provider binary at {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise Blocked(missing_code, f"{path} is not a regular file")
    if not st.st_mode & 0o111:
        raise Blocked(BlockerCode.NOT_EXECUTABLE, f"{path} has no execute permission")


def check_source_identity(checkout: Path, expected: SourceIdentity, provider: str
                          ) -> SourceIdentityEvidence:
    """The source's manifest must hold each field at exactly its value (type included: `true`
    is not `"true"`) and, when the policy names one, declare the executable in its `bin`."""
    name = expected.manifest
    try:
        raw = resolve_within(checkout, name, what="the manifest").read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise Blocked(
            BlockerCode.SOURCE_IDENTITY_MISMATCH, f"no readable {name} in the source: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise Blocked(BlockerCode.SOURCE_IDENTITY_MISMATCH, f"{name} is not a JSON object")
    bin_field = data.get("bin")
    bin_target = bin_field.get(expected.bin) if isinstance(bin_field, dict) and expected.bin \
        else None
    evidence = SourceIdentityEvidence(
        manifest=name,
        manifest_sha256=sha256_bytes(raw),
        fields={key: data.get(key) for key in expected.fields},
        bin=bin_field,
        bin_target=bin_target if isinstance(bin_target, str) else None,
    )
    problems = [f"{key} is {evidence.fields[key]!r}, not {value!r}"
                for key, value in expected.fields.items()
                if type(evidence.fields[key]) is not type(value) or evidence.fields[key] != value]
    if expected.bin and evidence.bin_target is None:
        problems.append(f"no bin named {expected.bin!r} (bin is {bin_field!r})")
    if problems:
        raise Blocked(
            BlockerCode.SOURCE_IDENTITY_MISMATCH,
            f"the source is not {provider}: {name} " + "; ".join(problems),
        )
    return evidence


def _lists_command(text: str, command: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(command)}(?![\w-])", text) is not None


# The probe's last step inside the sandbox: exec the candidate, or say why the kernel would not
# (an execute bit on something that is no program) with a line and an exit status of its own.
_EXEC_SHIM = (
    "import os, sys\n"
    "try:\n"
    "    os.execv(sys.argv[1], sys.argv[1:])\n"
    "except OSError as exc:\n"
    "    sys.stderr.write('%s' + (exc.strerror or str(exc)) + '\\n')\n"
    "    sys.exit(126)\n"
)
_EXEC_FAILED = "cto-harness probe: cannot execute: "


def probe_binary_identity(
    binary: Path, policy: ProviderPolicy, *, timeout_seconds: float | None = None,
    runtime: Sequence[str] = (), readable: Sequence[Path] = (), settings: Settings | None = None,
) -> IdentityEvidence:
    """Run `<binary> --help` in private directories; blocked `identity_mismatch` unless it exits 0
    and its output carries every marker and command name of the policy. `runtime` is the argv
    prefix that runs a script entry point (an npm package's: `[<bun>]`); `readable` what the
    probe may read besides the binary (an npm package's installed tree and its runtime);
    `settings` the caller's (a run's: the folders it hides are hidden from the probe too).

    Blocked `dist_missing`/`not_executable` when the file is absent or has no execute bit.
    """
    binary = Path(binary).absolute()
    check_executable(binary)
    spec = policy.binary_identity
    limit = timeout_seconds if timeout_seconds is not None else spec.probe_timeout_seconds
    argv = [*runtime, str(binary), *PROBE_ARGS]
    with tempfile.TemporaryDirectory(prefix="cto-harness-probe-") as tmp:
        # `sandbox/` is handed to the sandbox uid; the logs stay in the harness's own folder,
        # where the probed binary cannot replace them with a link to something else.
        root, logs = Path(tmp) / "sandbox", Path(tmp) / "logs"
        logs.mkdir()
        env = {name: os.environ[name] for name in _PASSTHROUGH if name in os.environ}
        env.setdefault("PATH", os.defpath)
        for var in (*PROBE_PRIVATE_DIRS, *spec.private_dirs):
            (root / "private" / var).mkdir(parents=True, exist_ok=True)
            env[var] = str(root / "private" / var)
        work = root / "cwd"  # no manifest of the provider's own above it
        work.mkdir()
        try:
            confined = run_confined(
                [sys.executable, "-I", "-S", "-c", _EXEC_SHIM % _EXEC_FAILED, *argv],
                work=root,
                cwd=work,
                env=env,
                readable=[binary, *(Path(p).absolute() for p in readable)],
                stdout_path=logs / "stdout.log",
                stderr_path=logs / "stderr.log",
                timeout_seconds=limit,
                max_log_bytes=_PROBE_OUTPUT_CAP,
                settings=settings,
            )
        except OSError as exc:  # e.g. ENOEXEC: an execute bit on something that is no program
            raise Blocked(BlockerCode.NOT_EXECUTABLE,
                          f"{binary} cannot be executed: {exc.strerror or exc}") from None
        result = confined.process
        output = (logs / "stdout.log").read_bytes() + (logs / "stderr.log").read_bytes()
    if result.exit_code == 126 and output.startswith(_EXEC_FAILED.encode()):
        why = output[len(_EXEC_FAILED):].decode("utf-8", "replace").splitlines()[0]
        raise Blocked(BlockerCode.NOT_EXECUTABLE, f"{binary} cannot be executed: {why}")
    text = output.decode("utf-8", "replace")
    evidence = IdentityEvidence(
        binary=str(binary),
        argv=argv,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration_ms=result.duration_ms,
        probed_at=result.started_at.astimezone(UTC).isoformat(timespec="seconds"),
        markers_found=[m for m in spec.markers if m in text],
        markers_missing=[m for m in spec.markers if m not in text],
        commands_found=[c for c in spec.commands if _lists_command(text, c)],
        commands_missing=[c for c in spec.commands if not _lists_command(text, c)],
        help_sha256=sha256_bytes(output),
        help_bytes=len(output),
        help_excerpt=text[:_EXCERPT_CHARS],
        confinement=confined.isolation,
    )
    if not evidence.passed:
        if evidence.timed_out:
            why = f"`{binary.name} --help` did not finish within {limit}s"
        elif evidence.exit_code != 0:
            why = f"`{binary.name} --help` exited {evidence.exit_code}"
        else:
            missing = evidence.markers_missing + evidence.commands_missing
            why = f"`{binary.name} --help` lacks {missing!r}"
        raise IdentityMismatch(f"{why}: not a {policy.name} `{policy.binary}` binary", evidence)
    return evidence
