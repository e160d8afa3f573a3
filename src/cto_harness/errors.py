"""One error model: every way a command can stop early, each family mapped to one exit code.

    HarnessError                 the root; never raised itself
    ├── UsageError          64   a malformed request: bad flag, unknown case id, bad setting
    │   └── PolicyInvalid        a provider policy file that does not parse or validate
    ├── Blocked              2   a fail-closed gate refused, with a `BlockerCode`
    ├── Failed               1   a check ran and said no
    │   ├── BundleInvalid        a bundle does not verify
    │   │   └── SignatureInvalid its signature does not
    │   └── CheckFailed          a validator's scenario did not behave
    ├── HarnessFault         3   the harness itself broke (a bundle is still written for runs)
    └── Interrupted          3   SIGTERM or Ctrl-C arrived

`exit_code_for(exc)` is the one mapping every command uses; `one_line(exc)` is what it prints.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from cto_harness.inert import inert


class ExitCode(IntEnum):
    """The contract exit codes of every command."""

    PASS = 0
    FAIL = 1
    BLOCKED = 2
    ERROR = 3
    USAGE = 64


EXIT_PASS = ExitCode.PASS
EXIT_FAIL = ExitCode.FAIL
EXIT_BLOCKED = ExitCode.BLOCKED
EXIT_ERROR = ExitCode.ERROR
EXIT_USAGE = ExitCode.USAGE


class BlockerCode(StrEnum):
    """Every blocker a report or a command may name. The values are contract: never rename one."""

    # Run gates (a Stage 2 run ends `blocked`, exit 2).
    ENGINE_NOT_ALLOWED = "engine_not_allowed"
    STAGE_NOT_AUTHORIZED = "stage_not_authorized"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    NOT_EXECUTABLE = "not_executable"
    PROVIDER_NOT_ADMITTED = "provider_not_admitted"
    IDENTITY_MISMATCH = "identity_mismatch"
    PROVIDER_POLICY_INVALID = "provider_policy_invalid"
    ADMISSION_REGISTRY_INVALID = "admission_registry_invalid"
    MODEL_NOT_ADMITTED = "model_not_admitted"
    MODEL_SCRIPT_INVALID = "model_script_invalid"  # the scripted endpoint's script set
    MODEL_CASSETTE_INVALID = "model_cassette_invalid"  # the replay endpoint's cassette
    CREDENTIALS_MISSING = "credentials_missing"
    TASK_CONTRACT_INVALID = "task_contract_invalid"
    PROVIDER_TIMEOUT = "provider_timeout"
    BASELINE_FAILED = "baseline_failed"
    # Isolation and the after-the-fact guards.
    ISOLATION_UNAVAILABLE = "isolation_unavailable"
    ISOLATION_BREACH = "isolation_breach"
    BUNDLE_TAMPERED = "bundle_tampered"
    OUTSIDE_WRITE_DETECTED = "outside_write_detected"
    WORKSPACE_SIZE_EXCEEDED = "workspace_size_exceeded"
    # The harness's own file handling and test run (issue 11).
    WORKSPACE_UNSTABLE = "workspace_unstable"
    TEST_COLLECTION_FAILED = "test_collection_failed"
    # Provider build and admission.
    BUN_MISSING = "bun_missing"
    SOURCE_ORIGIN_MISMATCH = "source_origin_mismatch"
    SOURCE_UNAVAILABLE = "source_unavailable"
    SOURCE_COMMIT_MISMATCH = "source_commit_mismatch"
    SOURCE_IDENTITY_MISMATCH = "source_identity_mismatch"
    BUILD_FAILED = "build_failed"
    DIST_MISSING = "dist_missing"
    SOURCE_MUTATED = "source_mutated"
    # A suite's run that left no bundle (`suite --executor ray`; in suite.json, verdict error).
    NODE_LOST = "node_lost"
    NODE_ERROR = "node_error"
    BUNDLE_REJECTED = "bundle_rejected"
    NPM_MISSING = "npm_missing"
    INTEGRITY_MISMATCH = "integrity_mismatch"
    # Recorded in a report's blockers, never raised as a gate.
    INTERRUPTED = "interrupted"
    HARNESS_ERROR = "harness_error"


class HarnessError(Exception):
    """The root of every error the harness raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(HarnessError):
    """The caller asked for something malformed (exit 64, one line on stderr, nothing written)."""

    exit_code = ExitCode.USAGE


class PolicyInvalid(UsageError):
    """A provider policy file that cannot be read or does not validate (names file and key)."""


class Blocked(HarnessError):
    """A fail-closed gate refused to go on (exit 2)."""

    exit_code = ExitCode.BLOCKED

    def __init__(self, code: BlockerCode | str, message: str, *, marker: str | None = None) -> None:
        # An unknown code is a bug in the harness: it must be added to BlockerCode (and so to
        # the report's JSON Schema) before any gate may raise it.
        self.code = BlockerCode(code)
        super().__init__(f"{self.code}: {message}")
        self.message = message
        # Name of a marker file under backend/ (DESIGN section 7), when this gate has one.
        self.marker = marker


class Failed(HarnessError):
    """A check ran to its end and said no (exit 1)."""

    exit_code = ExitCode.FAIL


class BundleInvalid(Failed):
    """A bundle does not verify: the first discrepancy found, named."""


class SignatureInvalid(BundleInvalid):
    """The envelope is missing, malformed, signed by another key, or covers other bytes."""


class CheckFailed(Failed):
    """A validator's scenario did not behave as the check it guards requires."""


class HarnessFault(HarnessError):
    """A fault of the harness itself (exit 3); a run still leaves a bundle with verdict `error`."""


class Interrupted(HarnessError):
    """SIGTERM or Ctrl-C arrived while a command was under way (exit 3)."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code of a command that stopped with `exc` (anything unexpected is a fault)."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.ERROR
    if isinstance(exc, HarnessError):
        return exc.exit_code
    return ExitCode.ERROR


def one_line(exc: BaseException, prog: str = "cto-harness") -> str:
    """The single stderr line a command prints for `exc`."""
    if isinstance(exc, Blocked):
        text = f"{prog}: blocked: {exc.code}: {exc.message}"
    elif isinstance(exc, Interrupted | KeyboardInterrupt):
        text = f"{prog}: interrupted"
    elif isinstance(exc, UsageError):
        text = f"{prog}: error: {exc}"
    elif isinstance(exc, Failed):
        text = f"{prog}: failed: {exc}"
    else:
        text = f"{prog}: harness error: {type(exc).__name__}: {exc}"
    # Messages name provider files and output: shown inert (no escape sequence acts).
    return inert(" ".join(text.split("\n")))
