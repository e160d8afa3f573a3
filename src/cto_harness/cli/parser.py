"""What every command of the one argparse tree shares: a parser whose usage errors are one line
and exit 64, and the options several commands take."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from cto_harness.errors import EXIT_USAGE

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a bad flag; the contract says 64, with one line on stderr."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def add_command(subparsers: Subparsers, name: str, summary: str, description: str | None = None
                ) -> argparse.ArgumentParser:
    """A sub-command whose own usage errors and sub-commands behave like the root's."""
    return subparsers.add_parser(name, help=summary, description=description or summary)


def add_subcommands(parser: argparse.ArgumentParser, dest: str) -> Subparsers:
    return parser.add_subparsers(dest=dest, required=True, metavar="COMMAND", parser_class=Parser)


def add_json(parser: argparse.ArgumentParser, what: str = "one JSON object on stdout") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def add_harness_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--harness-root", metavar="DIR", type=Path,
                        help="the repository's harness/ folder (default: $CTO_HARNESS_ROOT, else "
                             "the nearest one above the current directory)")


def challenge_value(value: str) -> str:
    from cto_harness.errors import UsageError
    from cto_harness.evidence.challenge import check_challenge_value

    try:
        return check_challenge_value(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_challenge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--challenge", metavar="VALUE", type=challenge_value,
                        help="a value of the verifier's choosing, bound into the nonce, the "
                             "report and the signature; `verify --challenge VALUE` demands it")


def harness_root(args: argparse.Namespace) -> Path:
    from cto_harness.core.fixtures import find_harness_root

    given: Path | None = getattr(args, "harness_root", None)
    return given.resolve() if given is not None else find_harness_root()


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return int(value)
