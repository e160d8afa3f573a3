"""`cto-harness config show|add-target`: the effective settings; hiding paths from providers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cto_harness.cli.parser import Subparsers, add_command, add_subcommands, print_json, text_table
from cto_harness.cli.settings_flags import add_setting_flags

if TYPE_CHECKING:
    from cto_harness.settings import SettingsBase


def add_parser(subparsers: Subparsers) -> None:
    config = add_command(subparsers, "config", "show the settings; add target repositories")
    commands = add_subcommands(config, "config_command")
    show = add_command(
        commands, "show", "every setting, its effective value and where it came from (JSON)",
        "Print the effective settings as JSON: where state and bundles go, the hidden target "
        "repositories, the isolation tier a run would use, each engine's own settings, and "
        "where every value came from (flag, environment variable, config file or default). "
        "Give the flags a run would get to see what it would use; `settings` lists every "
        "setting with its variable and flag.", handler=_show)
    show.add_argument("--engine", metavar="NAME[,NAME...]",
                      help="show only these engines' settings (default: every engine's); an "
                           "engine flag then applies to them only")
    show.add_argument("--table", action="store_true",
                      help="a table for people (setting, value, source) instead of JSON")
    add_setting_flags(show)
    add = add_command(commands, "add-target", "hide a path from every provider",
                      "Append a path to config.toml's target_repositories: hidden from every "
                      "provider, watched, and scanned for in task contracts.",
                      handler=_add_target)
    add.add_argument("path", metavar="PATH", type=Path, help="an absolute path (or one relative "
                     "to the current directory), never /")


def _add_target(args: argparse.Namespace) -> int:
    from cto_harness.config import add_target, config_path
    from cto_harness.settings import Settings

    settings = Settings.from_env()
    added = add_target(settings.home, str(args.path))
    print(f"cto-harness config: {added} is now hidden from every provider "
          f"({config_path(settings.home)})")
    return 0


def _rows(prefix: str, loaded: SettingsBase) -> list[dict[str, Any]]:
    """Every field of a settings object: its value, where it came from, its variable and flag."""
    values = loaded.model_dump(mode="json")
    return [{"name": f"{prefix}{name}", "value": values[name], "source": loaded.sources[name],
             "variable": loaded.env_names(name)[0], "flag": loaded.flag_name(name)}
            for name in type(loaded).model_fields]


def _show(args: argparse.Namespace) -> int:
    from cto_harness.cli.settings_flags import resolve
    from cto_harness.config import config_path
    from cto_harness.errors import Blocked
    from cto_harness.sandbox.isolation import choose_tier
    from cto_harness.sandbox.probe import probe

    engines = [n.strip() for n in args.engine.split(",")] if args.engine else None
    resolved = resolve(args, engines)
    settings = resolved.settings
    found = probe()
    try:
        tier, reason = choose_tier(settings.isolation, found)
    except Blocked as exc:  # a forced tier this machine lacks: shown, not raised
        tier, reason = "unavailable", exc.message
    rows = _rows("", settings)
    shown: dict[str, object] = {}
    for name, loaded in resolved.engines.items():
        shown[name] = {"settings": loaded.model_dump(mode="json"), "sources": loaded.sources}
        rows += _rows(f"engine.{name}.", loaded)
    if args.table:
        table = [("SETTING", "VALUE", "SOURCE", "VARIABLE / FLAG")]
        table += [(r["name"], "" if r["value"] is None else str(r["value"]), r["source"],
                   r["variable"] + (f" / {r['flag']}" if r["flag"] else " (environment only)"))
                  for r in rows]
        print(text_table(table))
        return 0
    print_json({
        "home": str(settings.home),
        "runs_dir": str(settings.runs_dir),
        "config_file": str(config_path(settings.home)),
        "config_file_exists": config_path(settings.home).is_file(),
        "target_repositories": [str(p) for p in settings.target_repositories],
        "isolation": {"requested": settings.isolation, "tier": tier, "reason": reason,
                      "probe": found.to_dict()},
        "workspace_limit_mb": settings.workspace_limit_mb,
        "keys_dir": str(settings.keys_dir),
        # Where every value came from, the engines' as `engine.<name>.<field>`.
        "sources": {r["name"]: r["source"] for r in rows},
        "settings": rows,
        "engines": shown,
    })
    return 0
