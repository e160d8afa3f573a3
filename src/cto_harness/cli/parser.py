"""What every command of the one argparse tree shares: a parser whose usage errors are one line
and exit 64, the options several commands take, and how they print JSON and tables."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

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


Handler = Callable[[argparse.Namespace], int]


def add_command(subparsers: Subparsers, name: str, summary: str, description: str | None = None,
                *, handler: Handler | None = None, raw: bool = False) -> argparse.ArgumentParser:
    """A sub-command whose own usage errors and sub-commands behave like the root's; `handler`
    (Namespace -> exit code) runs it; `raw` keeps the description's line breaks."""
    parser = subparsers.add_parser(
        name, help=summary, description=description or summary,
        formatter_class=argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def add_subcommands(parser: argparse.ArgumentParser, dest: str) -> Subparsers:
    return parser.add_subparsers(dest=dest, required=True, metavar="COMMAND", parser_class=Parser)


def add_json(parser: argparse.ArgumentParser, what: str = "one JSON object on stdout") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def add_public_key(parser: argparse.ArgumentParser, what: str = "the signer's public key (PEM)"
                   ) -> None:
    parser.add_argument("--public-key", metavar="FILE", type=Path,
                        help=f"{what}; default: this machine's "
                             "$CTO_HARNESS_HOME/keys/evidence-ed25519.pub")


def public_key(args: argparse.Namespace) -> Path | None:
    """The `--public-key` given, which must be a file (a usage error otherwise)."""
    from cto_harness.errors import UsageError

    given: Path | None = getattr(args, "public_key", None)
    if given is not None and not given.is_file():
        raise UsageError(f"--public-key: no such file: {given}")
    return given


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with two spaces; the last column is never padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)),
                                row[-1]]).rstrip() for row in rows)


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


def add_challenge(parser: argparse.ArgumentParser,
                  what: str = "a value of the verifier's choosing, bound into the nonce, the "
                              "report and the signature; `verify --challenge VALUE` demands it"
                  ) -> None:
    parser.add_argument("--challenge", metavar="VALUE", type=challenge_value, help=what)


def harness_root(args: argparse.Namespace) -> Path:
    from cto_harness.core.fixtures import find_harness_root

    given: Path | None = getattr(args, "harness_root", None)
    return given.resolve() if given is not None else find_harness_root()


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return int(value)
