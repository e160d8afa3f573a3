"""`cto-harness schemas`: the JSON Schemas generated from the typed contracts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cto_harness.cli.parser import Subparsers, add_command


def add_parser(subparsers: Subparsers) -> None:
    schemas = add_command(subparsers, "schemas", "write (or --check) the JSON Schemas")
    schemas.add_argument("--dir", type=Path, default=Path("schemas"), metavar="DIR",
                         help="the folder of the *.schema.json files (default: ./schemas)")
    mode = schemas.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the schemas (the default)")
    mode.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 if a schema is missing or stale")
    schemas.set_defaults(handler=_schemas)


def _schemas(args: argparse.Namespace) -> int:
    from cto_harness.schemas import check_schemas, write_schemas

    if args.check:
        stale = check_schemas(args.dir)
        for name in stale:
            print(f"stale or missing schema: {args.dir / name}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(args.dir):
        print(path)
    return 0
