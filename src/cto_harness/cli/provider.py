"""`cto-harness provider build|admit|verify|show|list`.

`register(subparsers)` adds the `provider` command to the main CLI's argparse sub-parsers; every
leaf parser sets `handler`, a function `(argparse.Namespace) -> int` that returns the exit code:
0 ok, 1 verify found different digests, 2 blocked (`blocked: <code>: <message>` on stderr),
64 usage. `python3 -m cto_harness.cli.provider provider …` runs this command on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from cto_harness.errors import (
    EXIT_BLOCKED,
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_PASS,
    EXIT_USAGE,
    Blocked,
    HarnessError,
    UsageError,
)
from cto_harness.inert import inert
from cto_harness.providers.build import admit_prebuilt, build_provider, verify_provider
from cto_harness.providers.policy import ProviderPolicy, default_policy_path, load_policy
from cto_harness.providers.registry import AdmissionRecord, list_admissions, registry_path
from cto_harness.settings import Settings

Handler = Callable[[argparse.Namespace], int]


def default_harness_root() -> Path:
    """The repository's `harness/` (this file is <repo>/src/cto_harness/provider/cli.py), else
    `./harness`."""
    candidate = Path(__file__).resolve().parents[3] / "harness"
    return candidate if candidate.is_dir() else Path.cwd() / "harness"


def _policy(args: argparse.Namespace) -> ProviderPolicy:
    return load_policy(Path(args.policy) if args.policy else default_policy_path(
        default_harness_root()
    ))


def _guarded(handler: Handler) -> Handler:
    """Map the harness's exceptions to exit codes and one line on stderr."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except Blocked as exc:
            print(f"blocked: {exc.code}: {inert(exc.message)}", file=sys.stderr)
            return EXIT_BLOCKED
        except UsageError as exc:
            print(f"usage error: {inert(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        except HarnessError as exc:
            print(f"error: {inert(str(exc))}", file=sys.stderr)
            return EXIT_ERROR

    return run


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _print_admitted(
    args: argparse.Namespace, report: Any, level: str, *, report_name: str | None = None
) -> None:
    """What `build` and `admit` print: the report as JSON, or where the admitted binary is."""
    if args.json:
        _print_json(report.model_dump(mode="json"))
        return
    print(f"admitted ({level}): {report.artifact.sha256}")
    print(f"  binary: {report.artifact.store_path}")
    if report_name:
        print(f"  report: {Path(report.artifact.store_path).parent / report_name}")


def _cmd_build(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    report = build_provider(
        args.source, args.commit, _policy(args), settings, progress=sys.stderr,
        source_url=args.source_url,
    )
    _print_admitted(args, report, "built", report_name="build-report.md")
    return EXIT_PASS


def _cmd_admit(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    report = admit_prebuilt(
        Path(args.binary), args.source_url, args.commit, _policy(args), settings,
        progress=sys.stderr,
    )
    _print_admitted(args, report, "asserted")
    return EXIT_PASS


def _find(settings: Settings, digest: str) -> AdmissionRecord:
    """The record whose digest is `digest` or starts with it (at least 8 hex digits)."""
    digest = digest.lower()
    if len(digest) < 8 or any(ch not in "0123456789abcdef" for ch in digest):
        raise UsageError(f"expected a sha256 (or a prefix of 8+ hex digits), got {digest!r}")
    matches = [r for r in list_admissions(settings) if r.sha256.startswith(digest)]
    if len(matches) != 1:
        what = "no admission" if not matches else f"{len(matches)} admissions"
        raise UsageError(f"{what} for {digest} in {registry_path(settings)}")
    return matches[0]


def _cmd_verify(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    record = _find(settings, args.sha256)
    result = verify_provider(
        record, _policy(args), settings, source=args.source, progress=sys.stderr
    )
    if args.json:
        _print_json({
            "matches": result.matches,
            "recorded_sha256": result.sha256,
            "store_sha256": result.store_sha256,
            "rebuilt_sha256": result.rebuilt_sha256,
            "store_path": result.store_path,
            "build_dir": result.build_dir,
        })
    else:
        print(f"recorded: {result.sha256}")
        print(f"store:    {result.store_sha256 or 'missing'}  ({result.store_path})")
        print(f"rebuilt:  {result.rebuilt_sha256}")
        print("verify: digests match" if result.matches else "verify: DIGESTS DIFFER")
    return EXIT_PASS if result.matches else EXIT_FAIL


def _table(records: Sequence[AdmissionRecord]) -> str:
    header = ("SHA-256", "STATUS", "PROVENANCE", "COMMIT", "ADMITTED", "STORE PATH")
    rows = [
        (r.sha256[:16], r.status, r.provenance_level, r.commit[:12], r.admitted_at, r.store_path)
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _cmd_list(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    records = list_admissions(settings)
    if args.json:
        _print_json({
            "registry": str(registry_path(settings)),
            "admissions": [r.model_dump(mode="json") for r in records],
        })
    elif records:
        print(_table(records))
    else:
        print(f"no admitted provider binaries ({registry_path(settings)})")
    return EXIT_PASS


def _cmd_show(args: argparse.Namespace) -> int:
    if args.sha256 is None:
        return _cmd_list(args)
    settings = Settings.from_env()
    record = _find(settings, args.sha256)
    if args.json:
        _print_json(record.model_dump(mode="json"))
    else:
        for key, value in record.model_dump(mode="json").items():
            print(f"{key:26} {value}")
    return EXIT_PASS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `provider` and its sub-commands; each leaf sets `handler` (Namespace -> exit code)."""
    provider = subparsers.add_parser(
        "provider", help="build, admit, verify and list provider binaries (WorkOS Case `ca`)",
        description="Build a provider from a pinned source or admit a prebuilt one; every "
        "binary is identified, stored by SHA-256 and recorded in the admission registry.",
    )
    provider.set_defaults(handler=lambda _args: _missing_subcommand(provider))
    commands = provider.add_subparsers(dest="provider_command", metavar="COMMAND")

    def policy_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--policy", metavar="FILE",
            help="provider policy TOML (default: harness/providers/case/policy.toml)",
        )

    def json_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON on stdout")

    build = commands.add_parser("build", help="build from a pinned source and admit (built)")
    build.add_argument("--source", required=True, metavar="URL_OR_DIR",
                       help="git URL or local checkout (never modified: the build runs in a clone)")
    build.add_argument("--commit", metavar="SHA", help="40-hex commit (default: the policy's pin)")
    build.add_argument("--source-url", metavar="URL",
                       help="the repository this source is (default: the URL, or the checkout's "
                       "origin); must be the policy's")
    policy_option(build)
    json_option(build)
    build.set_defaults(handler=_guarded(_cmd_build))

    admit = commands.add_parser("admit", help="admit a prebuilt binary (asserted provenance)")
    admit.add_argument("--binary", required=True, metavar="PATH")
    admit.add_argument("--source-url", required=True, metavar="URL")
    admit.add_argument("--commit", required=True, metavar="SHA")
    policy_option(admit)
    json_option(admit)
    admit.set_defaults(handler=_guarded(_cmd_admit))

    verify = commands.add_parser("verify", help="rebuild an admitted binary and compare digests")
    verify.add_argument("sha256", help="the admitted binary's SHA-256 (or a unique prefix)")
    verify.add_argument("--source", metavar="URL_OR_DIR",
                        help="where to fetch the recorded commit (default: as recorded)")
    policy_option(verify)
    json_option(verify)
    verify.set_defaults(handler=_guarded(_cmd_verify))

    show = commands.add_parser("show", help="show one admission, or all")
    show.add_argument("sha256", nargs="?", help="SHA-256 or unique prefix (default: all)")
    json_option(show)
    show.set_defaults(handler=_guarded(_cmd_show))

    listing = commands.add_parser("list", help="list the admission registry")
    json_option(listing)
    listing.set_defaults(handler=_guarded(_cmd_list))


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print("usage error: a provider sub-command is required", file=sys.stderr)
    return EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"usage error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: `python3 -m cto_harness.cli.provider provider <command> …`."""
    parser = _Parser(prog="cto-harness")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
