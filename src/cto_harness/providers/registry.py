"""The admission registry: which provider binaries (by SHA-256) may run, and on what grounds.

Layout: `$CTO_HARNESS_HOME/providers/<provider>/admissions.json` holds every record, keyed by the
binary's SHA-256, next to the content-addressed store `<sha256>/ca`.

One file rather than one file per digest: a reader (the run pipeline, `provider list`, health)
always sees one consistent snapshot from a single read, the file is small (one record per admitted
binary), and writes are rare. Each write replaces the whole file atomically (temp file, fsync,
rename, fsync of the directory), so a crash at any point leaves either the old or the new registry,
never a half-written record. Writers take an exclusive `flock` on a separate `admissions.lock`
(the data file's inode changes on every rename, so it cannot carry the lock) around the
read-modify-write, so two concurrent admissions both land. Readers need no lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError

from cto_harness.contracts import StrictModel
from cto_harness.errors import Blocked, BlockerCode
from cto_harness.fsutil import atomic_write_json, exclusive_lock, read_regular, sha256_file
from cto_harness.providers.policy import DEFAULT_PROVIDER
from cto_harness.settings import Settings

REGISTRY_SCHEMA_VERSION = 1
REGISTRY_NAME = "admissions.json"
LOCK_NAME = "admissions.lock"

AdmissionStatus = Literal["admitted", "not_admitted"]
AdmissionProvenance = Literal["built", "fetched", "asserted"]


class AdmissionRecord(StrictModel):
    """One admitted (or refused) binary, by digest. The fields are those of every distribution
    kind; what only one kind knows (say, a package's registry integrity) goes in `origin`."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    provider: str = DEFAULT_PROVIDER
    kind: str = Field(default="source", description="the distribution kind it came through")
    status: AdmissionStatus
    provenance_level: AdmissionProvenance
    store_path: str = Field(description="the durable read-only copy: <store>/<sha256>/<binary>")
    size_bytes: int = Field(ge=0)
    source_url: str = Field(description="where the binary comes from (claimed, checked)")
    source_location: str | None = Field(
        default=None, description="what was actually fetched (URL or local checkout), for verify"
    )
    pin: str = Field(min_length=1, validation_alias=AliasChoices("pin", "commit"),
                     description="the pinned revision it was built from (source: a commit)")
    policy_pin: str = Field(validation_alias=AliasChoices("policy_pin", "policy_commit"),
                            description="the policy's pin when this was admitted")
    origin: dict[str, str] = Field(default_factory=dict,
                                   description="facts only its distribution kind records")
    admitted_at: str
    build_report: str = Field(description="path of the build (or admission) report JSON")
    identity_evidence_sha256: str


class _RegistryFile(StrictModel):
    schema_version: int
    admissions: list[AdmissionRecord]


def provider_store_dir(settings: Settings, provider: str = DEFAULT_PROVIDER) -> Path:
    return settings.providers_dir / provider


def registry_path(settings: Settings, provider: str = DEFAULT_PROVIDER) -> Path:
    return provider_store_dir(settings, provider) / REGISTRY_NAME


# Far more than any registry holds (~1 kB a record).
_REGISTRY_CAP = 16 << 20


def _read(path: Path) -> list[AdmissionRecord]:
    try:
        # Never a link followed, never a FIFO waited on, never more than the cap: whatever
        # stands at this path, it is read as a registry or refused.
        raw = read_regular(path, _REGISTRY_CAP)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise Blocked(
            BlockerCode.ADMISSION_REGISTRY_INVALID,
            f"{path} cannot be read as an admission registry ({exc.strerror or exc}); "
            "repair or remove it",
        ) from None
    try:
        return _RegistryFile.model_validate_json(raw).admissions
    except ValidationError as exc:
        # Fail closed: an unreadable registry admits nothing, and is not silently rewritten.
        raise Blocked(
            BlockerCode.ADMISSION_REGISTRY_INVALID,
            f"{path} is not a valid admission registry ({exc.error_count()} problem(s)); "
            "repair or remove it",
        ) from None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _write_lock(settings: Settings, provider: str) -> Iterator[Path]:
    directory = provider_store_dir(settings, provider)
    with exclusive_lock(directory / LOCK_NAME):
        # Under the lock no other writer is between its temp write and its rename: any temp file
        # still here was left by a writer that crashed, and is garbage.
        for stale in directory.glob(f".{REGISTRY_NAME}.*.tmp"):
            stale.unlink(missing_ok=True)
        yield directory / REGISTRY_NAME


def list_admissions(settings: Settings, provider: str = DEFAULT_PROVIDER) -> list[AdmissionRecord]:
    """Every record, oldest admission first."""
    return _read(registry_path(settings, provider))


def find_admission(
    settings: Settings, sha256: str, provider: str = DEFAULT_PROVIDER
) -> AdmissionRecord | None:
    """The record for this digest (whatever its status), or None. Trusts the digest it is given:
    to admit bytes, use `lookup_admission`, which hashes them."""
    for record in list_admissions(settings, provider):
        if record.sha256 == sha256:
            return record
    return None


def lookup_admission(
    settings: Settings, binary: Path, provider: str = DEFAULT_PROVIDER
) -> AdmissionRecord | None:
    """Recompute `binary`'s SHA-256 and return its record if those exact bytes are admitted.

    A binary whose bytes changed after admission hashes differently and is not admitted. Pass the
    file you are about to execute (the run's private copy), so the bytes hashed are the bytes run.
    """
    try:
        if not binary.is_file():
            return None
        digest = sha256_file(binary)
    except OSError:
        return None
    record = find_admission(settings, digest, provider)
    if record is None or record.status != "admitted":
        return None
    return record


def record_admission(settings: Settings, record: AdmissionRecord) -> None:
    """Insert or replace the record for `record.sha256`, atomically, under the registry lock."""
    with _write_lock(settings, record.provider) as path:
        records = [r for r in _read(path) if r.sha256 != record.sha256]
        records.append(record)
        payload: dict[str, Any] = {
            "schema_version": REGISTRY_SCHEMA_VERSION,
            "admissions": [r.model_dump(mode="json") for r in records],
        }
        atomic_write_json(path, payload)
        _fsync_dir(path.parent)


def admission_summary(settings: Settings, provider: str = DEFAULT_PROVIDER) -> dict[str, Any]:
    """Counts for the health command (no hashing: cheap to call)."""
    path = registry_path(settings, provider)
    try:
        records = list_admissions(settings, provider)
    except Blocked as exc:
        return {"registry": str(path), "valid": False, "error": exc.message, "admitted": 0}
    admitted = [r for r in records if r.status == "admitted"]
    latest = max(admitted, key=lambda r: r.admitted_at, default=None)
    return {
        "registry": str(path),
        "valid": True,
        "exists": path.exists(),
        "total": len(records),
        "admitted": len(admitted),
        "by_provenance": {
            level: sum(1 for r in admitted if r.provenance_level == level)
            for level in ("built", "fetched", "asserted")
        },
        "store_missing": sum(1 for r in admitted if not _is_file(r.store_path)),
        "latest": None if latest is None else {
            "sha256": latest.sha256,
            "pin": latest.pin,
            "provenance_level": latest.provenance_level,
            "admitted_at": latest.admitted_at,
            "store_path": latest.store_path,
        },
    }


def _is_file(path: str) -> bool:
    """Whether a recorded store path is a file now; a path no system call takes (longer than
    PATH_MAX, a component past NAME_MAX) is not, rather than an OSError."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False
