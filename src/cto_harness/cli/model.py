"""`cto-harness model serve`: the deterministic model endpoint on loopback.

    cto-harness model serve --mode scripted --scripts harness/model-scripts/r1-string-slugify/happy
    cto-harness model serve --mode replay --cassette run/backend/model-cassette.jsonl
    cto-harness model serve --mode record --upstream https://api.anthropic.com \\
        --upstream-key-env ANTHROPIC_API_KEY --cassette new.jsonl

It prints its base URL on stdout (and into `--url-file`), serves until it has been idle for
`--idle-timeout` seconds, its parent process exits, or it gets SIGTERM/SIGINT, then exits 0.
`CTO_HARNESS_MODEL_TOKEN` in the environment makes it answer only requests carrying that key.
A Stage 2 run starts its own endpoint (`CTO_HARNESS_CASE_MODEL_ENDPOINT`); this command is for
people and other tools.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from pathlib import Path
from types import FrameType

from cto_harness.cli.parser import Subparsers, add_command, add_subcommands
from cto_harness.errors import UsageError

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def add_parser(subparsers: Subparsers) -> None:
    model = add_command(subparsers, "model", "the deterministic model endpoint (serve)")
    model_sub = add_subcommands(model, "model_command")
    serve = add_command(model_sub, "serve", "serve the Anthropic Messages and OpenAI Chat "
                        "Completions APIs on 127.0.0.1 (scripted, replay or record)", __doc__,
                        handler=cmd_serve, raw=True)
    serve.add_argument("--mode", required=True, choices=("scripted", "replay", "record"),
                       help="scripted: play a script set; replay: serve a cassette; record: "
                            "forward to --upstream and write a cassette")
    serve.add_argument("--scripts", metavar="DIR", help="scripted: a script set folder")
    serve.add_argument("--cassette", metavar="FILE",
                       help="replay: the cassette to serve; record: the cassette to write")
    serve.add_argument("--upstream", metavar="URL", help="record: the real endpoint")
    serve.add_argument("--upstream-key-env", metavar="NAME",
                       help="record: send this environment variable's value upstream as the "
                            "key, instead of the client's")
    serve.add_argument("--upstream-auth", choices=("x-api-key", "bearer"), default="x-api-key",
                       help="record: how the key is sent (Anthropic: x-api-key, the default; "
                            "OpenAI: bearer)")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    serve.add_argument("--url-file", metavar="FILE", help="write the base URL here once serving")
    serve.add_argument("--log", metavar="FILE", help="one JSON line per exchange")
    serve.add_argument("--idle-timeout", type=float, default=900.0, metavar="SECONDS",
                       help="stop after this long without a request (default 900; 0: never)")
    serve.add_argument("--parent-pid", type=int, default=os.getppid(), metavar="PID",
                       help="stop when this process exits (default: the parent; 0: never)")
    serve.add_argument("--volatile", action="append", default=[], metavar="NAME=VALUE",
                       help="replace VALUE by <<NAME>> before digesting and recording "
                            "(a run's own paths and ids); repeatable")


def _volatile(items: list[str]) -> dict[str, str]:
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not _NAME.fullmatch(name) or not value:
            raise UsageError(f"--volatile wants NAME=VALUE with NAME in [A-Z0-9_], got {item!r}")
        found[name] = value
    return found


def cmd_serve(args: argparse.Namespace) -> int:
    from cto_harness.fsutil import atomic_write_text
    from cto_harness.modelserver import (
        Cassette,
        CassetteError,
        EndpointConfig,
        ModelEndpoint,
        ScriptError,
        ScriptSet,
    )
    from cto_harness.settings import secret_values

    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be 0..65535")
    secrets = secret_values(os.environ)
    config = EndpointConfig(
        mode=args.mode, port=args.port, volatile=_volatile(args.volatile), secrets=secrets,
        log_path=Path(args.log) if args.log else None,
        idle_timeout=args.idle_timeout or None, parent_pid=args.parent_pid or None,
        token=os.environ.get("CTO_HARNESS_MODEL_TOKEN") or None,
    )
    try:
        if args.mode == "scripted":
            if not args.scripts:
                raise UsageError("--mode scripted needs --scripts DIR")
            config.scripts = ScriptSet.load(Path(args.scripts))
        elif args.mode == "replay":
            if not args.cassette:
                raise UsageError("--mode replay needs --cassette FILE")
            config.cassette = Cassette(Path(args.cassette))
        else:
            if not args.cassette or not args.upstream:
                raise UsageError("--mode record needs --upstream URL and --cassette FILE")
            config.upstream, config.record_to = args.upstream, Path(args.cassette)
            if args.upstream_key_env:
                key = os.environ.get(args.upstream_key_env)
                if not key:
                    raise UsageError(f"{args.upstream_key_env} is not set")
                config.upstream_headers = ({"x-api-key": key} if args.upstream_auth == "x-api-key"
                                           else {"authorization": f"Bearer {key}"})
    except (ScriptError, CassetteError) as exc:
        raise UsageError(str(exc)) from None
    endpoint = ModelEndpoint(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        endpoint.stop(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    url = endpoint.start()
    if args.url_file:
        atomic_write_text(Path(args.url_file), url + "\n")
    print(f"cto-harness model: {args.mode} endpoint on {url}", flush=True)
    while not endpoint.wait(0.5):
        pass
    print(f"cto-harness model: stopped ({endpoint.stats.stopped_because}); "
          f"{endpoint.stats.requests} requests, {endpoint.stats.errors} errors", file=sys.stderr)
    return 0
