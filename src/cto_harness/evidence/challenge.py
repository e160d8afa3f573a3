"""Freshness a verifier can demand: a caller-chosen challenge bound into the run's nonce.

The harness picks a nonce itself, so a nonce alone cannot prove a bundle is new: a complete
earlier bundle copied into place verifies. With `run --challenge VALUE` the nonce is derived from
the verifier's value and a random salt,

    nonce = sha256("cto-harness.challenge/1" NUL salt NUL challenge)[:32 hex]

and `freshness` (in report.json and freshness.json, both covered by the signed manifest) records
`challenge` and `challenge_salt`, which the signature's predicate repeats. `verify --challenge
VALUE` refuses a bundle that does not carry exactly that value with a nonce derived from it;
`verify` always refuses a bundle whose recorded challenge does not give its nonce. A bundle made
before the verifier chose its value cannot carry it (short of the signing key).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from cto_harness.errors import BundleInvalid, UsageError

DOMAIN = b"cto-harness.challenge/1"
MAX_CHALLENGE_CHARS = 1024


@dataclass(frozen=True)
class ChallengeBinding:
    challenge: str
    salt: str
    nonce: str


def check_challenge_value(challenge: str) -> str:
    """A usable challenge: 1-1024 printable characters (it is shown and stored as text)."""
    if not challenge or len(challenge) > MAX_CHALLENGE_CHARS or not challenge.isprintable():
        raise UsageError(f"--challenge must be 1 to {MAX_CHALLENGE_CHARS} printable characters")
    return challenge


def derive_nonce(challenge: str, salt: str) -> str:
    digest = hashlib.sha256(DOMAIN + b"\0" + salt.encode() + b"\0" + challenge.encode())
    return digest.hexdigest()[:32]


def bind(challenge: str) -> ChallengeBinding:
    salt = secrets.token_hex(16)
    return ChallengeBinding(challenge=check_challenge_value(challenge), salt=salt,
                            nonce=derive_nonce(challenge, salt))


def check_bundle_challenge(nonce: str, challenge: str | None, salt: str | None,
                           *, demanded: str | None) -> None:
    """Raise BundleInvalid unless the recorded challenge (if any) gives the nonce, and unless it
    is the `demanded` one (when a verifier demands one)."""
    recorded = challenge is not None or salt is not None
    if recorded and (challenge is None or salt is None or derive_nonce(challenge, salt) != nonce):
        raise BundleInvalid("the nonce is not derived from the recorded challenge")
    if demanded is not None and challenge != demanded:
        raise BundleInvalid("the bundle does not carry the demanded challenge"
                            + ("" if challenge is None else " (it carries another)"))
