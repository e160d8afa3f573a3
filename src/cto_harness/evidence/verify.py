"""`cto-harness verify <run-dir>`: check a bundle without trusting anything in it but the math."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from cto_harness.contracts import Freshness, Report
from cto_harness.errors import BundleInvalid, SignatureInvalid
from cto_harness.evidence.bundle import (
    MANIFEST,
    NOT_IN_MANIFEST,
    NOT_IN_REPORT,
    REQUIRED_FILES,
)
from cto_harness.evidence.challenge import check_bundle_challenge
from cto_harness.evidence.layout import bundle_files, is_temporary_name
from cto_harness.fsutil import read_regular, sha256_file
from cto_harness.inert import inert

# File timestamps come from a coarse kernel clock that may lag the one the run read.
_CLOCK_SLACK = timedelta(seconds=1)
# The most of one text file `verify` reads into memory (the manifest, report, freshness record,
# events, trace): the harness caps every log it keeps at 32 MiB, and these are smaller still.
TEXT_CAP = 256 << 20


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def verify_bundle(root: Path, public_key: Path | None = None, *, challenge: str | None = None,
                  run_id: str | None = None) -> Report:
    """Raise BundleInvalid at the first discrepancy; return the report when all holds.

    The DSSE signature (`evidence.dsse.json`) is checked with `public_key`, by default the local
    harness's own (`$CTO_HARNESS_HOME/keys/evidence-ed25519.pub`). Only regular files make a
    bundle: a link, FIFO or device in it is a discrepancy, never followed or read. Never raises
    anything else: whatever a malformed bundle makes go wrong is a named failure. A verifier may
    demand the `challenge` it gave the run (evidence/challenge.py) and the `run_id` it expects."""
    try:
        report = _verify(root, public_key)
        if run_id is not None and report.run_id != run_id:
            raise BundleInvalid(f"the bundle is run {report.run_id}, not the demanded {run_id}")
        if challenge is not None:
            check_bundle_challenge(report.nonce, report.freshness.challenge,
                                   report.freshness.challenge_salt, demanded=challenge)
        return report
    except BundleInvalid:
        raise
    except OSError as exc:
        raise BundleInvalid(f"unreadable bundle entry: {exc}") from exc
    except Exception as exc:  # unreadable bytes, a wrong JSON shape...
        raise BundleInvalid(f"the bundle cannot be read: {type(exc).__name__}: {exc}") from exc


def _verify(root: Path, public_key: Path | None) -> Report:
    from cto_harness.evidence.signing import load_public_key, verify_envelope

    root = root.resolve()
    if not root.is_dir():
        raise BundleInvalid(f"not a directory: {root}")
    for rel in REQUIRED_FILES:
        if not (root / rel).is_file():
            raise BundleInvalid(f"missing artifact: {rel}")
    if not any(p.startswith("task/") for p in bundle_files(root)):
        raise BundleInvalid("missing artifact: task/ holds no file")
    for rel in sorted(r for r in NOT_IN_MANIFEST if os.path.lexists(root / r)):
        info = os.lstat(root / rel)
        if not stat.S_ISREG(info.st_mode):
            raise BundleInvalid(f"not a regular file: {inert(rel)}")
        if info.st_size > TEXT_CAP:
            raise BundleInvalid(f"{rel} is {info.st_size} bytes, more than any bundle's")

    # The signature first: nothing the signer did not vouch for is parsed (the signed statement
    # covers the manifest, which covers every other file).
    key_path = public_key or _local_public_key()
    try:
        verify_envelope(root, load_public_key(key_path))
    except SignatureInvalid as exc:
        raise BundleInvalid(str(exc)) from exc

    listed: dict[str, str] = {}
    for number, line in enumerate(_text(root / MANIFEST).splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise BundleInvalid(f"{MANIFEST} line {number} is malformed")
        listed[rel] = digest
    present = {rel for rel in bundle_files(root) if rel not in NOT_IN_MANIFEST}
    for rel in sorted(present):
        if not stat.S_ISREG(os.lstat(root / rel).st_mode):
            raise BundleInvalid(f"not a regular file: {inert(rel)}")
    if unlisted := sorted(present - set(listed)) or unlisted_extras(root):
        raise BundleInvalid(f"file not in {MANIFEST}: {inert(unlisted[0])}")
    for rel, digest in sorted(listed.items()):
        path = root / rel
        if rel not in present:  # also refuses a listed name that climbs out of the bundle
            raise BundleInvalid(f"listed in {MANIFEST} but missing: {inert(rel)}")
        if (actual := sha256_file(path)) != digest:
            raise BundleInvalid(
                f"digest mismatch: {inert(rel)} (listed {digest[:12]}…, is {actual[:12]}…)"
            )

    try:
        report = Report.model_validate_json(_text(root / "report.json"))
        freshness = Freshness.model_validate_json(_text(root / "freshness.json"))
    except (ValidationError, ValueError) as exc:
        raise BundleInvalid(f"report.json or freshness.json does not parse: {exc}") from exc

    for rel, digest in report.artifacts.items():
        if listed.get(rel) != digest:
            raise BundleInvalid(f"report.json artifacts disagree with {MANIFEST}: {rel}")
    expected_in_report = {rel for rel in listed if rel not in NOT_IN_REPORT}
    if missing := sorted(expected_in_report - set(report.artifacts)):
        raise BundleInvalid(f"report.json artifacts omit: {missing[0]}")
    if (freshness.challenge, freshness.challenge_salt) != (
            report.freshness.challenge, report.freshness.challenge_salt):
        raise BundleInvalid("the challenge differs between report.json and freshness.json")
    check_bundle_challenge(report.nonce, freshness.challenge, freshness.challenge_salt,
                           demanded=None)
    if freshness.artifacts_manifest_sha256 != sha256_file(root / MANIFEST):
        raise BundleInvalid("freshness.json does not hold the digest of artifacts.sha256")

    ids = (report.run_id, report.nonce)
    if (freshness.run_id, freshness.nonce) != ids:
        raise BundleInvalid("run id or nonce differ between report.json and freshness.json")
    if (report.freshness.run_id, report.freshness.nonce) != ids:
        raise BundleInvalid("run id or nonce differ inside report.json")
    for name, key_run, key_nonce in (
        ("events.normalized.jsonl", "run_id", "nonce"),
        ("trace.jsonl", None, None),
    ):
        for number, line in enumerate(_text(root / name).splitlines(), 1):
            try:
                row = json.loads(line)
            except ValueError:
                raise BundleInvalid(f"{name} line {number} is not JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get("attributes", {}), dict):
                raise BundleInvalid(f"{name} line {number} is not a JSON object of its kind")
            found = (
                (row.get(key_run), row.get(key_nonce))
                if key_run
                else (row.get("attributes", {}).get("cto.run_id"),
                      row.get("attributes", {}).get("cto.nonce"))
            )
            if found != ids:
                raise BundleInvalid(f"{name} line {number}: run id or nonce differ from the report")
    started = _parse_time(freshness.started_at) - _CLOCK_SLACK
    for rel in listed:
        modified = datetime.fromtimestamp((root / rel).stat().st_mtime, tz=started.tzinfo)
        if modified < started:
            raise BundleInvalid(f"artifact predates the run: {rel}")

    if (root / "baseline").is_dir():
        try:
            baseline = verify_bundle(root / "baseline", key_path)
        except BundleInvalid as exc:
            raise BundleInvalid(f"baseline/: {exc}") from exc
        if baseline.nonce != report.nonce:
            raise BundleInvalid("baseline/ belongs to another run (nonce differs)")
    return report


def _text(path: Path) -> str:
    try:
        return read_regular(path, TEXT_CAP).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleInvalid(f"{path.name} is not UTF-8 text (byte {exc.start})") from None


def unlisted_extras(root: Path) -> list[str]:
    """Files of a sealed bundle that `bundle_files` passes over: a `private/` folder (removed
    before sealing) and leftover temporary files; also a folder named like one (its files are
    listed, so only an empty one can reach here). Only `workspace/` may hold unlisted files."""
    found: list[str] = []
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                if entry.name == "workspace" and (prefix == "" or prefix == "baseline/"):
                    continue
                if entry.name == "private" and (prefix == "" or prefix == "baseline/"):
                    found.append(rel + "/")
                elif entry.is_dir(follow_symlinks=False):
                    if is_temporary_name(entry.name):
                        found.append(rel + "/")
                    stack.append((Path(entry.path), rel + "/"))
                elif is_temporary_name(entry.name):
                    found.append(rel)
    return sorted(found)


def _local_public_key() -> Path:
    from cto_harness.evidence.signing import PUBLIC_KEY
    from cto_harness.settings import Settings

    path = Settings.from_env().keys_dir / PUBLIC_KEY
    if not path.is_file():
        raise BundleInvalid(f"no local public key at {path}: pass --public-key FILE")
    return path
