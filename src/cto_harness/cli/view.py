"""`cto-harness view RUN_DIR|SUITE_DIR [B] [--out FILE] [--serve [--port N]]`."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cto_harness.cli.parser import Subparsers
from cto_harness.errors import UsageError

if TYPE_CHECKING:
    from cto_harness.viewer.render import Site

DESCRIPTION = """\
Re-verify a run's evidence bundle (or every run of a suite) and write it as self-contained HTML:
verdict and reason, the provider's own outcome, task, diff, each test, a timeline of phases and
tool calls, baseline, isolation, admission and every artifact with its digest. Two folders
compare two runs or two suites side by side. A bundle that fails verification is shown under a
red UNVERIFIED banner, never as evidence.

Exit: 0 written and everything verified, 1 written but something did not verify, 64 usage."""


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "view", help="re-verify a run or suite and write (or serve) it as HTML; two folders "
        "compare", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", metavar="FOLDER",
                        help="a run bundle or a suite folder; give two to compare them")
    parser.add_argument("--out", metavar="FILE",
                        help="the page to write (default: $XDG_CACHE_HOME/cto-harness/views/"
                             "<name>/index.html, ~/.cache by default; never inside a bundle, "
                             "which would no longer verify)")
    parser.add_argument("--serve", action="store_true",
                        help="serve the pages on 127.0.0.1 and print the URL (Ctrl-C stops)")
    parser.add_argument("--port", type=int, metavar="N",
                        help="the port for --serve (default: any free port)")
    parser.add_argument("--public-key", metavar="FILE",
                        help="the signer's public key (PEM); default: this machine's "
                             "$CTO_HARNESS_HOME/keys/evidence-ed25519.pub")
    parser.set_defaults(func=cmd_view)
    return parser


def _default_out(folders: list[Path]) -> Path:
    # A cache, outside $CTO_HARNESS_HOME: writing there while a run is going would trip that
    # run's outside-write guard.
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = "\0".join(str(f.resolve()) for f in folders)
    name = "-vs-".join(f.resolve().name for f in folders)[:80] or "view"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    folder = f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return Path(cache).absolute() / "cto-harness" / "views" / folder / "index.html"


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def cmd_view(args: argparse.Namespace) -> int:
    from cto_harness.viewer.site import build_site, mounts_for

    folders = [Path(f) for f in args.folders]
    if len(folders) > 2:
        raise UsageError("view takes one folder, or two to compare")
    if args.port is not None and not args.serve:
        raise UsageError("--port needs --serve")
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {args.port}")
    public_key = Path(args.public_key) if args.public_key else None
    if public_key is not None and not public_key.is_file():
        raise UsageError(f"--public-key: no such file: {public_key}")
    scratch: Path | None = None
    if args.out:
        out = Path(args.out)
        if out.suffix != ".html":
            raise UsageError(f"--out must name an .html file, got {out}")
    elif args.serve:
        scratch = Path(tempfile.mkdtemp(prefix="cto-harness-view-"))
        out = scratch / "index.html"
    else:
        out = _default_out(folders)
    if any(_inside(out, f) for f in folders):
        raise UsageError("--out must not be inside a bundle or suite folder: a file added to "
                         "a bundle makes it fail verification")
    try:
        site = build_site(folders, out, public_key=public_key, serve=args.serve)
        status = ("everything verified" if site.verified
                  else "UNVERIFIED evidence inside: see the red banner")
        print(f"cto-harness view: {len(site.pages)} pages, {status}", file=sys.stderr)
        if not args.serve:
            print(site.main)
            return 0 if site.verified else 1
        return _serve(site, mounts_for(folders), args.port or 0)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _serve(site: Site, mounts: dict[str, Path], port: int) -> int:
    from cto_harness.viewer.serve import ViewServer

    try:
        server = ViewServer(site.main, site.pages, mounts, site.files, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
    print(server.url, flush=True)
    print("cto-harness view: serving on 127.0.0.1 only; Ctrl-C stops", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0 if site.verified else 1
