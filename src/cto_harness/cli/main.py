"""`cto-harness`: one argparse tree for every command. Each command module adds its parser
(`add_parser(subparsers)`) and sets `handler`, a function `(Namespace) -> exit code`; errors are
mapped to exit codes in one place (`errors.exit_code_for`): 0 pass, 1 fail, 2 blocked,
3 harness error, 64 usage error (one line on stderr)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from cto_harness import __version__
from cto_harness.cli import (
    case,
    config,
    health,
    model,
    provider,
    run,
    runs,
    schemas,
    suite,
    validate,
    verify,
    view,
)
from cto_harness.cli.parser import Parser, add_subcommands
from cto_harness.errors import HarnessError, Interrupted, exit_code_for, one_line

# Each module registers its commands; importing them is cheap (handlers import what they use).
COMMANDS = (run, suite, verify, health, provider, validate, config, schemas, view, runs, case,
            model)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted("SIGTERM")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cto-harness",
        description="Run third-party coding agents on copied fixture tasks and hand back "
                    "evidence you can check without trusting the agent.",
        epilog="Exit codes: 0 pass, 1 fail, 2 blocked, 3 harness error, 64 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"cto-harness {__version__}",
                        help="print the version and exit")
    subparsers = add_subcommands(parser, "command")
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args))
    except (HarnessError, KeyboardInterrupt) as exc:
        print(one_line(exc), file=sys.stderr)
        return exit_code_for(exc)
    except BrokenPipeError:
        raise  # stdout's reader went away: cli/entry.py says so in one line
    except Exception as exc:  # a bug: the traceback helps whoever reports it, then one line
        import traceback  # only a bug needs it

        traceback.print_exc()
        print(one_line(exc), file=sys.stderr)
        return exit_code_for(exc)
