"""Command line of the route-record validator (tools/validate_cto_child.py)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from cto_harness.settings import Settings
from cto_harness.validators.routes import validate_routes


def main(argv: Sequence[str], *, default_route_dir: Path) -> int:
    parser = argparse.ArgumentParser(prog="validate_cto_child.py", description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--route-dir", type=Path, default=default_route_dir)
    args = parser.parse_args(argv)
    started = time.monotonic()
    records, violations = validate_routes(args.route_dir, Settings.from_env())
    ok = not violations
    if args.json:
        print(json.dumps({
            "ok": ok,
            "route_dir": str(args.route_dir),
            "records": len(records),
            "work_items": sum(len(r.items) for r in records),
            "violations": [{"file": v.file, "line": v.line, "message": v.message}
                           for v in violations],
            "duration_ms": int((time.monotonic() - started) * 1000),
        }, indent=2))
    else:
        for violation in violations:
            print(violation)
        items = sum(len(r.items) for r in records)
        print(f"{'OK' if ok else 'FAILED'}: {len(records)} route records, {items} work items, "
              f"{len(violations)} violations")
    return 0 if ok else 1
