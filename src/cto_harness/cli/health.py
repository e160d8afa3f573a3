"""`cto-harness health`: every validator, the fake lane, admission and isolation in one object."""

from __future__ import annotations

import argparse
import json

from cto_harness.cli.parser import Subparsers, add_command, add_harness_root, add_json, harness_root


def add_parser(subparsers: Subparsers) -> None:
    health = add_command(subparsers, "health", "all validators, the fake lane, admission and "
                         "isolation: exit 0 only if all hold",
                         "Run the route validator, the adapter validator and the fake lane on "
                         "every case; report the admission registry and the isolation tiers. A "
                         "real provider that is not configured is reported, not a failure.")
    add_json(health)
    add_harness_root(health)
    health.set_defaults(handler=_health)


def _health(args: argparse.Namespace) -> int:
    from cto_harness.validators.health import health

    root = harness_root(args)
    result = health(root.parent, root)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, part in result["parts"].items():
            print(f"{part['status'].upper():<7} {name:<18} {part['duration_ms']:>6} ms")
        print(f"provider: {result['provider']}")
        print(f"{'OK' if result['ok'] else 'FAILED'} in {result['duration_ms'] / 1000:.1f}s")
    return 0 if result["ok"] else 1
