"""What every engine that runs a third-party provider does with it, shared by Case and pi: load
its policy, probe the identity of the copy that will run, and build the private environment it
runs in."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cto_harness.engines.base import Admission, RunContext
from cto_harness.errors import Blocked, BlockerCode, PolicyInvalid
from cto_harness.fsutil import atomic_write_json
from cto_harness.git import git_env
from cto_harness.providers import (
    AdmissionRecord,
    IdentityMismatch,
    ProviderPolicy,
    default_policy_path,
    load_policy,
    probe_binary_identity,
)

IDENTITY_EVIDENCE = "provider-identity.json"


def outside_policy(record: AdmissionRecord, policy: ProviderPolicy) -> str | None:
    """Why an admission record does not belong to the policy a run is under (None when it
    does): a binary admitted with another `--policy` (another source, another kind) is not
    admitted under this one, whatever its record's status says."""
    if record.kind != policy.distribution.kind:
        return (f"it was admitted as a {record.kind!r} distribution; the {policy.name} policy "
                f"is of kind {policy.distribution.kind!r}")
    if not policy.source_url_matches(record.source_url):
        return (f"it was admitted from {record.source_url}; the {policy.name} policy's source "
                f"is {policy.source_url}")
    if policy.recorded_pin(record.pin) is None:
        # A pin the policy dropped is revoked: its binaries stop running, admitted or not.
        return (f"it was built from {record.pin}, a pin the {policy.name} policy neither pins "
                f"nor accepts ([[accepted_pins]])")
    pinned = getattr(policy.distribution, "integrity", None)
    if pinned is not None and record.origin.get("integrity") != pinned:
        return (f"its package's integrity is {record.origin.get('integrity', 'unrecorded')!s:.30}"
                f"…; the {policy.name} policy pins {pinned[:30]}…")
    return None


def engine_policy(ctx: RunContext, provider: str, *, kind: str | None = None) -> ProviderPolicy:
    """`harness/providers/<provider>/policy.toml`; an unreadable one, or one of another
    distribution kind than `kind`, blocks `provider_policy_invalid`."""
    try:
        policy = load_policy(default_policy_path(ctx.harness_root, provider))
    except PolicyInvalid as exc:
        raise Blocked(BlockerCode.PROVIDER_POLICY_INVALID, str(exc)) from None
    if kind is not None and policy.distribution.kind != kind:
        raise Blocked(BlockerCode.PROVIDER_POLICY_INVALID,
                      f"the {policy.name} policy is of kind {policy.distribution.kind!r}, "
                      f"not {kind!r}")
    return policy


def identity_gate(ctx: RunContext, admission: Admission, policy: ProviderPolicy, *,
                  runtime: Sequence[str] = (), readable: Sequence[Path] = ()) -> Admission:
    """Gate: `--help` on the hashed copy that will run (`admission.provider.executed_path`,
    run by `runtime` for a script entry point) must carry the policy's markers, else
    `identity_mismatch`. The probe's evidence goes to `backend/provider-identity.json` either
    way."""
    try:
        evidence = probe_binary_identity(Path(admission.provider.executed_path or ""), policy,
                                         runtime=runtime, readable=readable,
                                         settings=ctx.settings)
    except IdentityMismatch as mismatch:
        atomic_write_json(ctx.backend / IDENTITY_EVIDENCE,
                          mismatch.evidence.model_dump(mode="json"))
        raise
    except Blocked as blocked:  # the copy vanished or lost its execute bit meanwhile
        raise Blocked(BlockerCode.IDENTITY_MISMATCH, blocked.message) from None
    atomic_write_json(ctx.backend / IDENTITY_EVIDENCE, evidence.model_dump(mode="json"))
    ctx.events.emit("gate.checked", gate="provider_identity", passed=True,
                    help_sha256=evidence.help_sha256)
    return admission


def provider_environment(ctx: RunContext, home: Path, tmp: Path, *,
                         path_first: Sequence[Path] = (),
                         extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a provider process: git without user configuration, a private
    HOME, XDG folders and TMPDIR, no prompt, and `extra` (the engine's own folders, the model's
    credential variables). `path_first` goes before the caller's PATH (guards, stand-ins)."""
    env = git_env(home)
    env.pop("LC_ALL", None)
    env |= {
        "PATH": os.pathsep.join([*map(str, path_first), ctx.environ.get("PATH") or os.defpath]),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp),
        "GIT_TERMINAL_PROMPT": "0",
        # Agents run the fixture's Python tests: byte-code caches in the workspace would be
        # changes outside the allowed paths that nobody asked for.
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
    }
    return env | dict(extra or {})


__all__ = ["engine_policy", "identity_gate", "provider_environment"]
