"""`cto-harness verify`: re-check a bundle without trusting anything in it but the math."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cto_harness.cli.parser import Subparsers, add_command, add_json
from cto_harness.inert import inert


def add_parser(subparsers: Subparsers) -> None:
    verify = add_command(subparsers, "verify", "re-check a bundle's digests, ids and signature",
                         "Re-hash every artifact against artifacts.sha256 and report.json, check "
                         "that run id and nonce agree everywhere, that nothing predates the run, "
                         "and the signature. Exit 0 when all holds, 1 at the first discrepancy.")
    verify.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the bundle's folder")
    add_json(verify, "print {ok, run_id, verdict} (or {ok, error}) on stdout")
    verify.add_argument("--public-key", metavar="FILE", type=Path,
                        help="the trusted public key (PEM): the bundle's signer, or the key of "
                             "the machine that ran its suite; default: this machine's "
                             "$CTO_HARNESS_HOME/keys/evidence-ed25519.pub")
    verify.add_argument("--suite", metavar="DIR", type=Path,
                        help="the suite folder whose signers.dsse.json names the key of a run "
                             "signed on another node (default: found above the run folder)")
    verify.add_argument("--challenge", metavar="VALUE",
                        help="refuse the bundle unless its run was given this --challenge (the "
                             "nonce is derived from it: a replayed earlier bundle cannot carry "
                             "a value chosen after it)")
    verify.add_argument("--run-id", metavar="ID",
                        help="refuse the bundle unless it is this run")
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from cto_harness.cli.suite_keys import verification_key
    from cto_harness.errors import BundleInvalid, ExitCode, UsageError
    from cto_harness.evidence.verify import verify_bundle

    if not args.run_dir.is_dir():
        raise UsageError(f"no bundle folder at {args.run_dir}")
    try:
        report = verify_bundle(args.run_dir, verification_key(args), challenge=args.challenge,
                               run_id=args.run_id)
    except BundleInvalid as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        print(f"cto-harness verify: FAILED: {inert(str(exc))}", file=sys.stderr)
        return ExitCode.FAIL
    if args.json:
        print(json.dumps({"ok": True, "run_id": report.run_id, "verdict": report.verdict}))
    else:
        print(f"cto-harness verify: OK: {inert(report.run_id)} (verdict {report.verdict}); "
              f"{len(report.artifacts)} artifacts re-hashed, signature checked")
    return ExitCode.PASS
