"""`cto-harness provider build|admit|verify|show|list`: provider binaries and their admission.

Each command works on one provider: `--provider NAME` (default `case`) reads
`harness/providers/NAME/policy.toml`, or `--policy FILE` names a policy. `build` and `verify` run
the route of the policy's distribution kind. Exit codes: 0 ok, 1 `verify` found different
digests, 2 blocked (`blocked: <code>: <message>` on stderr), 64 usage. The build route is
imported by the handlers, only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cto_harness.cli.parser import Subparsers, add_command, add_json, add_subcommands
from cto_harness.errors import EXIT_FAIL, EXIT_PASS, UsageError

if TYPE_CHECKING:
    from cto_harness.providers.policy import ProviderPolicy
    from cto_harness.providers.registry import AdmissionRecord
    from cto_harness.settings import Settings


def default_harness_root() -> Path:
    """$CTO_HARNESS_ROOT, else the `harness/` above the current directory, else the one of the
    repository this package is installed from."""
    from cto_harness.core.fixtures import find_harness_root
    from cto_harness.errors import UsageError

    try:
        return find_harness_root()
    except UsageError:
        return Path(__file__).resolve().parents[3] / "harness"


def _policy(args: argparse.Namespace) -> ProviderPolicy:
    from cto_harness.providers.policy import default_policy_path, load_policy

    path = args.policy or default_policy_path(default_harness_root(), args.provider)
    return load_policy(path)


def _provider_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
        raise argparse.ArgumentTypeError(f"provider names match [a-z0-9][a-z0-9-]*, got {value!r}")
    return value


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
    from cto_harness.providers.distribution import route
    from cto_harness.settings import Settings

    policy = _policy(args)
    build = route(policy.distribution.route)
    report = build(args.source, args.commit, policy, Settings.from_env(), progress=sys.stderr,
                   source_url=args.source_url)
    _print_admitted(args, report, report.provenance_level, report_name="build-report.md")
    return EXIT_PASS


def _cmd_admit(args: argparse.Namespace) -> int:
    from cto_harness.providers.build import admit_prebuilt
    from cto_harness.settings import Settings

    report = admit_prebuilt(
        args.binary, args.source_url, args.commit, _policy(args), Settings.from_env(),
        progress=sys.stderr,
    )
    _print_admitted(args, report, "asserted")
    return EXIT_PASS


def _find(settings: Settings, provider: str, digest: str) -> AdmissionRecord:
    """The record whose digest is `digest` or starts with it (at least 8 hex digits)."""
    from cto_harness.providers.registry import list_admissions, registry_path

    digest = digest.lower()
    if len(digest) < 8 or any(ch not in "0123456789abcdef" for ch in digest):
        raise UsageError(f"expected a sha256 (or a prefix of 8+ hex digits), got {digest!r}")
    matches = [r for r in list_admissions(settings, provider) if r.sha256.startswith(digest)]
    if len(matches) != 1:
        what = "no admission" if not matches else f"{len(matches)} admissions"
        raise UsageError(f"{what} for {digest} in {registry_path(settings, provider)}")
    return matches[0]


def _cmd_verify(args: argparse.Namespace) -> int:
    from cto_harness.providers.distribution import route
    from cto_harness.settings import Settings

    settings = Settings.from_env()
    policy = _policy(args)
    record = _find(settings, policy.name, args.sha256)
    verify = route(policy.distribution.verify_route)
    result = verify(record, policy, settings, source=args.source, progress=sys.stderr)
    if args.json:
        _print_json({
            "matches": result.matches,
            "recorded_sha256": result.sha256,
            "store_sha256": result.store_sha256,
            "rebuilt_sha256": result.rebuilt_sha256,
            "store_path": result.store_path,
            "build_dir": result.build_dir,
            **({"recorded_integrity": result.recorded_integrity,
                "fetched_integrity": result.fetched_integrity}
               if hasattr(result, "fetched_integrity") else {}),
        })
    else:
        print(f"recorded: {result.sha256}")
        print(f"store:    {result.store_sha256 or 'missing'}  ({result.store_path})")
        print(f"rebuilt:  {result.rebuilt_sha256}")
        print("verify: digests match" if result.matches else "verify: DIGESTS DIFFER")
    return EXIT_PASS if result.matches else EXIT_FAIL


def _table(records: Sequence[AdmissionRecord]) -> str:
    header = ("SHA-256", "STATUS", "PROVENANCE", "PIN", "ADMITTED", "STORE PATH")
    rows = [
        (r.sha256[:16], r.status, r.provenance_level, r.pin[:12], r.admitted_at, r.store_path)
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _cmd_list(args: argparse.Namespace) -> int:
    from cto_harness.providers.registry import list_admissions, registry_path
    from cto_harness.settings import Settings

    settings = Settings.from_env()
    records = list_admissions(settings, args.provider)
    if args.json:
        _print_json({
            "registry": str(registry_path(settings, args.provider)),
            "admissions": [r.model_dump(mode="json") for r in records],
        })
    elif records:
        print(_table(records))
    else:
        print(f"no admitted provider binaries ({registry_path(settings, args.provider)})")
    return EXIT_PASS


def _cmd_show(args: argparse.Namespace) -> int:
    if args.sha256 is None:
        return _cmd_list(args)
    from cto_harness.settings import Settings

    record = _find(Settings.from_env(), args.provider, args.sha256)
    if args.json:
        _print_json(record.model_dump(mode="json"))
    else:
        for key, value in record.model_dump(mode="json").items():
            print(f"{key:26} {value}")
    return EXIT_PASS


def add_parser(subparsers: Subparsers) -> None:
    """Add `provider` and its sub-commands; each leaf sets `handler` (Namespace -> exit code)."""
    provider = add_command(
        subparsers, "provider", "build, admit, verify and list provider binaries",
        "Build a provider from a pinned source or admit a prebuilt one; every binary is "
        "identified, stored by SHA-256 and recorded in the admission registry.",
    )
    commands = add_subcommands(provider, "provider_command")

    def provider_options(parser: argparse.ArgumentParser, *, policy: bool = True) -> None:
        parser.add_argument("--provider", default="case", metavar="NAME", type=_provider_name,
                            help="the provider: its policy is harness/providers/NAME/policy.toml "
                                 "(default: case)")
        if policy:
            parser.add_argument("--policy", type=Path, metavar="FILE",
                                help="a provider policy TOML instead of the provider's own")

    build = commands.add_parser("build", help="build (or fetch) at the pin and admit",
                                description="Source kind: clone the source at the pin, prove its "
                                "identity, build it, probe the binary, store it by SHA-256 and "
                                "admit it with provenance `built`. npm kind: fetch the pinned "
                                "version from the configured registry, check its integrity, "
                                "install it without scripts, probe it, store the tree by its "
                                "digest and admit it with provenance `fetched`. "
                                "Exit 0 admitted, 2 blocked.")
    build.add_argument("--source", metavar="URL_OR_DIR",
                       help="source kind (required): git URL or local checkout (never modified: "
                       "the build runs in a clone); npm kind (optional): a local tarball, "
                       "checked against the registry's integrity like a fetched one")
    build.add_argument("--commit", metavar="PIN",
                       help="the pin: a 40-hex commit, or an npm version (default: the policy's)")
    build.add_argument("--source-url", metavar="URL",
                       help="the repository this source is (default: the URL, or the checkout's "
                       "origin); must be the policy's")
    provider_options(build)
    add_json(build, "print the build report on stdout")
    build.set_defaults(handler=_cmd_build)

    admit = commands.add_parser("admit", help="admit a prebuilt binary (asserted provenance)",
                                description="Probe a prebuilt binary, store it by SHA-256 and "
                                "admit it with provenance `asserted` (its claimed source is "
                                "recorded, not built). Exit 0 admitted, 2 blocked.")
    admit.add_argument("--binary", required=True, type=Path, metavar="PATH",
                       help="the prebuilt binary")
    admit.add_argument("--source-url", required=True, metavar="URL",
                       help="the repository it claims to come from; must be the policy's")
    admit.add_argument("--commit", required=True, metavar="SHA",
                       help="the 40-hex commit it claims to be built from")
    provider_options(admit)
    add_json(admit, "print the admission report on stdout")
    admit.set_defaults(handler=_cmd_admit)

    verify = commands.add_parser("verify", help="rebuild an admitted binary and compare digests",
                                 description="Rebuild the recorded source and pin at the same "
                                 "path and compare the recorded, stored and rebuilt digests. "
                                 "Exit 0 equal, 1 different, 2 blocked.")
    verify.add_argument("sha256", help="the admitted binary's SHA-256 (or a unique prefix)")
    verify.add_argument("--source", metavar="URL_OR_DIR",
                        help="where to fetch the recorded pin (default: as recorded)")
    provider_options(verify)
    add_json(verify, "print the three digests on stdout")
    verify.set_defaults(handler=_cmd_verify)

    show = commands.add_parser("show", help="show one admission, or all")
    show.add_argument("sha256", nargs="?", help="SHA-256 or unique prefix (default: all)")
    provider_options(show, policy=False)
    add_json(show, "print the record(s) on stdout")
    show.set_defaults(handler=_cmd_show)

    listing = commands.add_parser("list", help="list the admission registry")
    provider_options(listing, policy=False)
    add_json(listing, "print the registry on stdout")
    listing.set_defaults(handler=_cmd_list)
