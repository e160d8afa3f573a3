#!/usr/bin/env python3
"""Conformance against the real WorkOS Case, for a person:

    CTO_HARNESS_CASE_SOURCE=<checkout of workos/case> python3 tools/case_conformance.py [--json]

Builds Case from the checkout through `cto-harness provider build` (its HEAD must be a pin the
policy records), admits it, and runs Stage 2 on r1-string-slugify through the users' command
against the harness's scripted model endpoint, once per script set: `happy` (pass, Case's
pipeline completed, one local pull request, no forbidden action, nothing left running, the
bundle verifies), `strict-closer` (pass, Case failed at its closer, the disagreement named),
`hostile-gh-api` and `hostile-edit-tests` (fail, for the named reasons), then record → replay
against a local upstream (same patch and verdict, offline). Prints the figures (wall time,
provider time, Case's phases and outcomes) and exits 0 only if everything is as expected.

Everything happens in a temporary CTO_HARNESS_HOME (kept with --keep or --home); nothing of Case
is copied anywhere else. `--evidence DIR` copies the happy run's bundle (without its workspace)
and the public key that signed it to DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
    os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(REPO / "src"))

from cto_harness.validators.conformance import (  # noqa: E402
    SCENARIOS,
    SKIP_REASON,
    ConformanceError,
    run_conformance,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--source", default=os.environ.get("CTO_HARNESS_CASE_SOURCE"),
                        help="a checkout of workos/case (default: $CTO_HARNESS_CASE_SOURCE)")
    parser.add_argument("--source-url", help="the repository the checkout is, when its origin "
                        "is a mirror (passed to `provider build --source-url`)")
    parser.add_argument("--home", help="CTO_HARNESS_HOME to use (kept); default: a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="run only these script sets (repeatable)")
    parser.add_argument("--no-replay", action="store_true", help="skip record → replay")
    parser.add_argument("--evidence", help="copy the happy run's bundle here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    if not args.source:
        print(f"case_conformance: not run: {SKIP_REASON}", file=sys.stderr)
        return 2
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="cto-case-conform-"))
    try:
        result = run_conformance(
            REPO, Path(args.source).absolute(), home, source_url=args.source_url,
            scenarios=tuple(args.scenario or SCENARIOS), replay=not args.no_replay,
            progress=lambda line: print(f"[conformance] {line}", file=sys.stderr, flush=True))
    except ConformanceError as exc:
        print(f"case_conformance: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.home and not args.keep:
            pass  # removed below, once the evidence is copied
    summary = result.summary()
    if args.evidence:
        happy = next((r for r in result.results if r.name == "happy"), None)
        if happy is not None:
            target = Path(args.evidence)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(happy.run_dir, target, ignore=lambda d, names: [
                n for n in names if n in ("workspace", "private")])
            shutil.copy2(home / "keys" / "evidence-ed25519.pub",
                         target.parent / "case-conformance-ed25519.pub")
            summary["evidence"] = str(target)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        provider = summary["provider"]
        print(f"Case {provider['sha256']} built at {provider['commit']} "
              f"({(provider['recorded_pin'] or {}).get('kind')} pin) in {provider['build_ms']} ms")
        for s in summary["scenarios"]:
            phases = ", ".join(f"{p['phase']} {p['outcome']} ({p['ms']} ms)"
                               for p in s["case_phases"])
            failed = [name for name, ok in s["checks"].items() if not ok]
            print(f"- {s['scenario']}: verdict {s['verdict']}, Case {s['case_outcome']}"
                  f"{' at ' + s['case_failed_agent'] if s['case_failed_agent'] else ''}; "
                  f"wall {s['wall_ms']} ms, provider {s['provider_ms']} ms; phases: {phases}"
                  f"{'; NOT AS EXPECTED: ' + ', '.join(failed) if failed else ''}")
        for name, check in summary["record_replay"].items():
            print(f"- record/replay {name}: {'ok' if check['passed'] else 'FAILED'} "
                  f"({check['detail']})")
        print("OK" if summary["ok"] else "FAILED")
    if not args.home and not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    elif not args.json:
        print(f"home kept: {home}", file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
