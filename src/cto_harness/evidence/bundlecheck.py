"""A bundle check that never raises: `verify_bundle` (digests, freshness, signature, baseline,
the node key a suite vouches for) turned into a verdict on the evidence and one line saying why,
for the pages and the run history."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cto_harness.inert import inert


@dataclass(frozen=True)
class BundleCheck:
    ok: bool
    summary: str  # one line: what held, or the first failure (inert)
    checked: list[str] = field(default_factory=list)


def check_bundle(root: Path, public_key: Path | None = None) -> BundleCheck:
    """`verify_bundle` (digests, freshness, signature, baseline) that never raises: a bundle so
    malformed that checking it crashes is a failed check like any other."""
    from cto_harness.errors import BundleInvalid, SignatureInvalid
    from cto_harness.evidence.suite_signers import SignerUnknown, key_for_run
    from cto_harness.evidence.verify import verify_bundle

    try:
        # A run of a suite that ran on other nodes: the node key its suite vouches for.
        key = key_for_run(root, public_key)
        report = verify_bundle(root, key)
    except (SignerUnknown, SignatureInvalid) as exc:
        return BundleCheck(False, inert(f"signed by a key this suite does not vouch for: {exc}"))
    except BundleInvalid as exc:
        return BundleCheck(False, inert(str(exc)))
    except (OSError, ValueError, RecursionError) as exc:
        return BundleCheck(False, inert(f"the bundle could not be checked: "
                                        f"{type(exc).__name__}: {exc}"))
    checked = [
        f"{len(report.artifacts) + 1} artifacts re-hashed against artifacts.sha256",
        "report.json, freshness.json, events and trace agree on run id and nonce",
        "no artifact predates the run",
        "signature (evidence.dsse.json) checked with "
        + ("a node key that the suite's signers.dsse.json vouches for"
           if key is not None and key != public_key and key.name != "evidence-ed25519.pub"
           else "the given public key" if public_key else "this machine's harness key"),
    ]
    if (root / "baseline").is_dir():
        checked.append("the same-run baseline bundle verified the same way")
    return BundleCheck(True, "digests, freshness and signature hold", checked)
