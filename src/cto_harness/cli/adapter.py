"""Command line of the adapter validator (harness/runner/validate-case-provider-adapter.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cto_harness.errors import EXIT_USAGE


def _harness_root(value: str) -> Path:
    root = Path(value).resolve()
    if not (root / "evals" / "cases").is_dir() or not (root / "providers" / "case" / "policy.toml").is_file():
        raise argparse.ArgumentTypeError(
            f"{value} is not a harness folder (needs evals/cases/ and providers/case/policy.toml)")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    from cto_harness.validators.adapter import CHECKS, run_checks

    parser = argparse.ArgumentParser(
        prog="validate-case-provider-adapter.py",
        description="Run every fail-closed scenario of the Case adapter with stand-in providers in "
                    "a temporary home; exit 0 only if all pass.")
    parser.add_argument("--harness-root", type=_harness_root, required=True,
                        help="the repository's harness/ folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--check", action="append", choices=sorted(CHECKS), metavar="NAME",
                        help="run only this check (repeatable)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else 0
    started = time.monotonic()
    results = run_checks(args.harness_root, args.check)
    ok = all(r.passed for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [r.to_dict() for r in results],
                          "duration_ms": int((time.monotonic() - started) * 1000)}, indent=2))
    else:
        width = max(len(r.name) for r in results)
        for r in results:
            print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.duration_ms:>6} ms  {r.detail}")
        print(f"\n{'OK' if ok else 'FAILED'}: {sum(r.passed for r in results)}/{len(results)} checks "
              f"passed in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
