"""Which key signed which run of a suite, endorsed by the key of the machine that ran the suite.

A suite run on other machines (the Ray executor) holds bundles signed by each node's own key. The
suite records every signer: `keys/<keyid>.pub` in the suite folder (the file name is the key's
id, the SHA-256 of its raw bytes, checked on every read) and a `signer` per run in suite.json. A
node key is only as good as that record, and suite.json is an unsigned file anyone with write
access could edit; so the suite also writes `signers.dsse.json`: a DSSE envelope, signed by the
suite machine's own key (the one `verify` trusts by default, or `--public-key`), over the mapping
run folder -> (key id, digest of the bundle's `artifacts.sha256`) and the public keys themselves.

`cto-harness verify <run>` inside a suite (found by walking up to `suite.json`, or `--suite DIR`)
accepts a bundle signed by another key only if that envelope verifies with the trusted key and
names this run with this key and this manifest.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cto_harness.errors import SignatureInvalid
from cto_harness.evidence.signing import (
    ENVELOPE,
    ENVELOPE_CAP,
    KEY_CAP,
    PAYLOAD_TYPE,
    PUBLIC_KEY,
    key_id,
    load_or_create_key,
    load_public_key,
    pae,
    public_pem,
)
from cto_harness.fsutil import atomic_write_bytes, atomic_write_text, read_regular

SIGNERS_FILE = "signers.dsse.json"
SIGNERS_TYPE = "https://cto-harness.dev/suite-signers/v1"
KEYS_DIR = "keys"
SUITE_FILE = "suite.json"
# runs/<case>/<rNNN>: a run folder is three levels below its suite folder.
_MAX_SUITE_DEPTH = 4
# signers.dsse.json: ~200 bytes a run and ~120 a key; far more than any suite writes.
_SIGNERS_CAP = 64 << 20


class SignerUnknown(SignatureInvalid):
    """The run's signing key is not one the suite endorsed with the trusted key (a failed check,
    exit 1, like any other signature that does not hold)."""


def store_public_key(suite_dir: Path, pem: bytes) -> tuple[str, Path]:
    """Keep a signer's public key as `keys/<keyid>.pub`; returns (keyid, path)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise SignatureInvalid(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureInvalid("a signer's key is not ed25519")
    keyid = key_id(key)
    path = suite_dir / KEYS_DIR / f"{keyid}.pub"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        atomic_write_bytes(path, public_pem(key))
    return keyid, path


def key_path(suite_dir: Path, keyid: str) -> Path:
    """`keys/<keyid>.pub`, checked to hold the key of that id."""
    if len(keyid) != 64 or any(c not in "0123456789abcdef" for c in keyid):
        raise SignerUnknown(f"malformed key id {keyid[:80]!r}")
    path = suite_dir / KEYS_DIR / f"{keyid}.pub"
    if key_id(load_public_key(path, follow_link=False)) != keyid:
        raise SignerUnknown(f"{path} does not hold the key {keyid[:16]}…")
    return path


def local_public_key(keys_dir: Path) -> Path:
    return keys_dir / PUBLIC_KEY


def keyid_of(path: Path) -> str:
    return key_id(load_public_key(path))


def endorse(suite_dir: Path, runs: Iterable[Mapping[str, Any]], keys_dir: Path) -> None:
    """(Re)write `signers.dsse.json` over every run that has a bundle and a signer."""
    entries: dict[str, dict[str, str]] = {}
    keys: dict[str, str] = {}
    for run in runs:
        rel, keyid, manifest = run.get("run_dir"), run.get("signer"), run.get("manifest_sha256")
        if not (rel and keyid and manifest and run.get("verdict")):
            continue
        entries[str(rel)] = {"keyid": str(keyid), "manifest_sha256": str(manifest)}
        if keyid not in keys:
            keys[str(keyid)] = _key_text(key_path(suite_dir, str(keyid)))
    key = load_or_create_key(keys_dir)
    payload = json.dumps({"_type": SIGNERS_TYPE, "runs": entries, "keys": keys},
                         sort_keys=True, separators=(",", ":")).encode()
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()),
                        "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode()}],
    }
    atomic_write_text(suite_dir / SIGNERS_FILE, json.dumps(envelope, indent=2) + "\n")


def find_suite(run_dir: Path) -> Path | None:
    """The suite folder holding `run_dir` (the nearest parent with a suite.json), or None."""
    current = run_dir.resolve()
    for _ in range(_MAX_SUITE_DEPTH):
        current = current.parent
        if (current / SUITE_FILE).is_file() and (current / "runs") in run_dir.resolve().parents:
            return current
    return None


def bundle_signer(run_dir: Path) -> str | None:
    """The key id the bundle's envelope names (a hint only: the signature decides)."""
    try:
        envelope = json.loads(read_regular(run_dir / ENVELOPE, ENVELOPE_CAP))
        return str(envelope["signatures"][0]["keyid"])
    except (OSError, ValueError, KeyError, IndexError, TypeError, RecursionError):
        return None


def _endorsement(suite_dir: Path, trusted: Ed25519PublicKey) -> dict[str, Any]:
    path = suite_dir / SIGNERS_FILE
    try:
        envelope = json.loads(read_regular(path, _SIGNERS_CAP))
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = envelope["signatures"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SignerUnknown(f"{path} is missing or malformed: {exc}") from exc
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise SignerUnknown(f"{path}: unexpected payloadType")
    from cryptography.exceptions import InvalidSignature

    for entry in signatures if isinstance(signatures, list) else []:
        try:
            trusted.verify(base64.b64decode(entry["sig"], validate=True),
                           pae(PAYLOAD_TYPE, payload))
            break
        except (InvalidSignature, ValueError, KeyError, TypeError):
            continue
    else:
        raise SignerUnknown(f"{path} is not signed by the trusted key {key_id(trusted)[:16]}…")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise SignerUnknown(f"{path}: the signed statement does not parse: {exc}") from exc
    if not isinstance(data, dict) or data.get("_type") != SIGNERS_TYPE:
        raise SignerUnknown(f"{path} is not a suite signers statement")
    return data


def endorsed_runs(suite_dir: Path, trusted_key: Path) -> frozenset[str]:
    """The run folders (relative to the suite) that `signers.dsse.json` names, once it verifies
    with `trusted_key`: the suite's signed list of its finished runs, which suite.json (unsigned)
    must not leave out. Raises SignerUnknown (or SignatureInvalid for the key itself)."""
    return frozenset(endorsed_manifests(suite_dir, trusted_key))


def endorsed_manifests(suite_dir: Path, trusted_key: Path) -> dict[str, str]:
    """Each run folder the signed list names -> the digest of that bundle's artifacts.sha256:
    a bundle counts in this suite only where it is that one (not a bundle copied in from
    another suite, the runs history or a baseline). Raises as `endorsed_runs`."""
    trusted = load_public_key(trusted_key)
    runs = _endorsement(suite_dir, trusted).get("runs")
    if not isinstance(runs, dict):
        raise SignerUnknown(f"{suite_dir / SIGNERS_FILE} lists no runs")
    return {str(rel): str(entry.get("manifest_sha256")) if isinstance(entry, dict) else ""
            for rel, entry in runs.items()}


def resolve_key(run_dir: Path, trusted_key: Path, suite_dir: Path | None = None) -> Path:
    """The public key to check `run_dir`'s signature with.

    `trusted_key` itself when it signed the bundle or when the run belongs to no suite; otherwise
    the suite's recorded key for this run, provided `signers.dsse.json` verifies with
    `trusted_key` and names this run, this key and this manifest. Raises SignerUnknown if not
    (SignatureInvalid if `trusted_key` cannot be read), and nothing else: every file it reads
    here is input, and a malformed one is a failed check."""
    try:
        return _resolve_key(run_dir, trusted_key, suite_dir)
    except SignatureInvalid:
        raise
    # UnicodeError is a ValueError; the others come from a signed record of the wrong shape.
    except (OSError, ValueError, RecursionError, TypeError, KeyError, AttributeError) as exc:
        raise SignerUnknown(f"the suite's record of the signer cannot be read: "
                            f"{type(exc).__name__}: {exc}") from exc


def _key_text(path: Path) -> str:
    return read_regular(path, KEY_CAP).decode("ascii")


def _resolve_key(run_dir: Path, trusted_key: Path, suite_dir: Path | None) -> Path:
    from cto_harness.fsutil import sha256_file

    suite = suite_dir.resolve() if suite_dir is not None else find_suite(run_dir)
    trusted = load_public_key(trusted_key)
    signer = bundle_signer(run_dir)
    if suite is None or signer is None or signer == key_id(trusted):
        return trusted_key
    try:
        rel = run_dir.resolve().relative_to(suite).as_posix()
    except ValueError:
        raise SignerUnknown(f"{run_dir} is not inside the suite {suite}") from None
    endorsed = _endorsement(suite, trusted)
    entry = endorsed.get("runs", {}).get(rel)
    if not isinstance(entry, dict) or entry.get("keyid") != signer:
        raise SignerUnknown(f"the suite {suite} records no key {signer[:16]}… for {rel}")
    manifest = run_dir / "artifacts.sha256"
    if not manifest.is_file() or sha256_file(manifest) != entry.get("manifest_sha256"):
        raise SignerUnknown(f"{rel}/artifacts.sha256 is not the manifest the suite endorsed")
    pem = endorsed.get("keys", {}).get(signer)
    if not isinstance(pem, str):
        raise SignerUnknown(f"the suite's endorsement lacks the key {signer[:16]}…")
    path = key_path(suite, signer)
    if _key_text(path) != pem:
        raise SignerUnknown(f"{path} differs from the endorsed key")
    return path


def key_for_run(run_dir: Path, trusted: Path | None = None) -> Path | None:
    """`resolve_key` with the trusted key defaulting to this machine's; None when this machine
    has no key (then `verify_bundle` reports that itself)."""
    if trusted is None:
        from cto_harness.settings import Settings

        trusted = local_public_key(Settings.from_env().keys_dir)
        if not trusted.is_file():
            return None
    return resolve_key(run_dir, trusted)
