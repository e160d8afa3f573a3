"""Signed evidence: a DSSE envelope over the bundle's manifest and freshness record.

The harness holds an ed25519 key, created on first use under `$CTO_HARNESS_HOME/keys`
(`evidence-ed25519.pem`, mode 0600; `evidence-ed25519.pub` beside it). The isolation hides that
folder from every provider, so a provider can rewrite files it can reach but cannot re-sign them.

`evidence.dsse.json` is the last file of a bundle, written after `freshness.json`:

```json
{"payloadType": "application/vnd.in-toto+json",
 "payload": "<base64 of an in-toto Statement v1>",
 "signatures": [{"keyid": "<sha256 of the raw public key>", "sig": "<base64 ed25519>"}]}
```

The Statement's subjects are `artifacts.sha256` (which lists every other file's digest, report
included) and `freshness.json` (which holds the manifest's digest, run id and nonce); the
signature is over DSSE's pre-authentication encoding (PAE) of payload type and payload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cto_harness.errors import SignatureInvalid
from cto_harness.evidence.intoto import STATEMENT_TYPE, statement
from cto_harness.fsutil import atomic_write_bytes, atomic_write_text, read_regular, sha256_file

ENVELOPE = "evidence.dsse.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://cto-harness.dev/evidence-bundle/v1"
PRIVATE_KEY = "evidence-ed25519.pem"
PUBLIC_KEY = "evidence-ed25519.pub"
SUBJECTS = ("artifacts.sha256", "freshness.json")
# Read before anything is trusted, so read with a bound: a PEM key is ~120 bytes, an envelope
# ~1 kB; what is far larger is not one.
KEY_CAP = 64 << 10
ENVELOPE_CAP = 1 << 20


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_or_create_key(keys_dir: Path) -> Ed25519PrivateKey:
    """The harness's signing key; created (0600, in a 0700 folder) when there is none."""
    private_path = keys_dir / PRIVATE_KEY
    if private_path.is_file():
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{private_path} is not an ed25519 key")
        return key
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Link-free creation: a second process creating the key at the same time keeps the first.
    tmp = keys_dir / f".{PRIVATE_KEY}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        os.link(tmp, private_path)
    except FileExistsError:
        tmp.unlink()
        return load_or_create_key(keys_dir)
    tmp.unlink()
    atomic_write_bytes(keys_dir / PUBLIC_KEY, public_pem(key.public_key()), mode=0o644)
    return key


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path, *, follow_link: bool = True) -> Ed25519PublicKey:
    """The ed25519 key in the PEM file `path`; a link is followed only with `follow_link` (a key
    the user names may be one; a key inside a bundle or suite folder may not)."""
    try:
        key = serialization.load_pem_public_key(read_regular(path, KEY_CAP,
                                                             follow_link=follow_link))
    except (OSError, ValueError) as exc:
        raise SignatureInvalid(f"cannot read the public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureInvalid(f"{path} is not an ed25519 public key")
    return key


def bundle_statement(root: Path, predicate: dict[str, Any]) -> dict[str, Any]:
    """The Statement the envelope signs: the bundle's manifest and freshness record."""
    return statement({name: sha256_file(root / name) for name in SUBJECTS}, PREDICATE_TYPE,
                     predicate)


def sign_bundle(root: Path, key: Ed25519PrivateKey, predicate: dict[str, Any]) -> dict[str, Any]:
    """Write `evidence.dsse.json` over the sealed bundle at `root` with `key`; returns the
    envelope."""
    payload = json.dumps(bundle_statement(root, predicate), sort_keys=True,
                         separators=(",", ":")).encode()
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()),
                        "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode()}],
    }
    atomic_write_text(root / ENVELOPE, json.dumps(envelope, indent=2) + "\n")
    return envelope


def verify_envelope(root: Path, public: Ed25519PublicKey) -> dict[str, Any]:
    """Check the envelope's signature and that its subjects are the bundle's bytes; returns the
    Statement. Raises SignatureInvalid at the first problem."""
    path = root / ENVELOPE
    if not path.is_file():
        raise SignatureInvalid(f"missing {ENVELOPE}: the bundle is not signed")
    try:
        envelope = json.loads(read_regular(path, ENVELOPE_CAP))
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = envelope["signatures"]
        payload_type = envelope["payloadType"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SignatureInvalid(f"{ENVELOPE} is malformed: {exc}") from exc
    if payload_type != PAYLOAD_TYPE:
        raise SignatureInvalid(f"{ENVELOPE}: unexpected payloadType {payload_type!r}")
    wanted = key_id(public)
    good = False
    for entry in signatures if isinstance(signatures, list) else []:
        try:
            public.verify(base64.b64decode(entry["sig"], validate=True), pae(payload_type, payload))
            good = True
            break
        except (InvalidSignature, ValueError, KeyError, TypeError):
            continue
    if not good:
        raise SignatureInvalid(
            f"{ENVELOPE}: no valid signature by the expected key {wanted[:16]}…")
    try:
        stmt: dict[str, Any] = json.loads(payload)
        subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SignatureInvalid(f"{ENVELOPE}: the signed statement is malformed: {exc}") from exc
    if stmt.get("_type") != STATEMENT_TYPE:
        raise SignatureInvalid(f"{ENVELOPE}: not an in-toto Statement v1")
    for name in SUBJECTS:
        if name not in subjects:
            raise SignatureInvalid(f"{ENVELOPE}: the signed statement does not cover {name}")
        if not (root / name).is_file() or sha256_file(root / name) != subjects[name]:
            raise SignatureInvalid(f"{ENVELOPE}: {name} is not the file that was signed")
    return stmt
