"""Which key `cto-harness verify` checks a bundle's signature with (see
`evidence/suite_signers.py`): the trusted key (`--public-key`, else this machine's), or, for a
run of a suite that ran on other nodes, the node key the suite endorsed with the trusted key."""

from __future__ import annotations

import argparse
from pathlib import Path

from cto_harness.errors import UsageError


def verification_key(args: argparse.Namespace) -> Path | None:
    from cto_harness.errors import BundleInvalid, SignatureInvalid
    from cto_harness.evidence.suite_signers import SignerUnknown, resolve_key
    from cto_harness.evidence.verify import _local_public_key

    run_dir = Path(args.run_dir)
    suite = Path(args.suite) if getattr(args, "suite", None) else None
    if suite is not None and not (suite / "suite.json").is_file():
        raise UsageError(f"--suite {suite}: no suite.json there")
    trusted = Path(args.public_key) if args.public_key else _local_public_key()
    try:
        return resolve_key(run_dir, trusted, suite)
    except (SignerUnknown, SignatureInvalid) as exc:
        raise BundleInvalid(f"signed by a key this suite does not vouch for: {exc}") from exc
