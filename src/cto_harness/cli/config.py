"""`cto-harness config show|add-target`: the effective settings; hiding paths from providers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cto_harness.cli.parser import Subparsers, add_command, add_subcommands


def add_parser(subparsers: Subparsers) -> None:
    config = add_command(subparsers, "config", "show the settings; add target repositories")
    commands = add_subcommands(config, "config_command")
    show = commands.add_parser("show", help="settings, target repositories and isolation (JSON)",
                               description="Print the effective settings as JSON: where state "
                                           "and bundles go, the hidden target repositories, the "
                                           "isolation tier a run would use, each engine's own "
                                           "settings, and where every value came from.")
    show.set_defaults(handler=_show)
    add = commands.add_parser("add-target", help="hide a path from every provider",
                              description="Append a path to config.toml's target_repositories: "
                                          "hidden from every provider, watched, and scanned for "
                                          "in task contracts.")
    add.add_argument("path", metavar="PATH", type=Path, help="an absolute path (or one relative "
                     "to the current directory), never /")
    add.set_defaults(handler=_add_target)


def _add_target(args: argparse.Namespace) -> int:
    from cto_harness.config import add_target, config_path
    from cto_harness.settings import Settings

    settings = Settings.from_env()
    added = add_target(settings.home, str(args.path))
    print(f"cto-harness config: {added} is now hidden from every provider "
          f"({config_path(settings.home)})")
    return 0


def _show(args: argparse.Namespace) -> int:
    from cto_harness.config import config_path
    from cto_harness.errors import Blocked
    from cto_harness.sandbox.isolation import choose_tier, probe
    from cto_harness.settings import Settings

    settings = Settings.from_env()
    found = probe()
    try:
        tier, reason = choose_tier(settings.isolation, found)
    except Blocked as exc:  # a forced tier this machine lacks: shown, not raised
        tier, reason = "unavailable", exc.message
    print(json.dumps({
        "home": str(settings.home),
        "runs_dir": str(settings.runs_dir),
        "config_file": str(config_path(settings.home)),
        "config_file_exists": config_path(settings.home).is_file(),
        "target_repositories": [str(p) for p in settings.target_repositories],
        "isolation": {"requested": settings.isolation, "tier": tier, "reason": reason,
                      "probe": found.to_dict()},
        "workspace_limit_mb": settings.workspace_limit_mb,
        "keys_dir": str(settings.keys_dir),
        "sources": settings.sources,
        "engines": _engines(),
    }, indent=2))
    return 0


def _engines() -> dict[str, object]:
    """Each engine's own settings (no secret is ever a setting) and where each value came from."""
    import os

    from cto_harness.engines import engine_names, get_engine

    shown: dict[str, object] = {}
    for name in engine_names():
        engine = get_engine(name)
        loaded = engine.load_settings(os.environ)
        shown[name] = {"settings": loaded.model_dump(mode="json"), "sources": loaded.sources}
    return shown
