"""Shared helpers of the benchmarks: the package on sys.path, interleaved timing, medians.

Every benchmark measures the harness and its reference side by side in ONE process, round by
round (harness, reference, harness, reference, ...), and reports medians and ratios: on a shared
machine absolute times drift, ratios of interleaved samples much less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

if TYPE_CHECKING:
    from cto_harness.core.fixtures import FixtureCase


def arguments(doc: str, *, rounds: int) -> argparse.ArgumentParser:
    """A benchmark's parser: its docstring's first paragraph, `--rounds` and `--json`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=rounds,
                        help=f"measured rounds ({rounds})")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def solved_copy(case: FixtureCase, into: Path) -> Path:
    """The fixture with the fake solution laid over it: where the bare verification command runs
    (what a passing run verifies, without the harness)."""
    shutil.copytree(case.repo, into, symlinks=True)
    if case.overlay_dir().is_dir():
        shutil.copytree(case.overlay_dir(), into, symlinks=True, dirs_exist_ok=True)
    return into


def interleaved(actions: Mapping[str, Callable[[], object]], rounds: int, *,
                warmup: int = 1, setup: Callable[[], object] | None = None
                ) -> dict[str, list[float]]:
    """Run each action once per round, in a rotating order; seconds per action, per round."""
    names = list(actions)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        for name in order:
            if setup is not None:
                setup()
            started = time.perf_counter()
            actions[name]()
            elapsed = time.perf_counter() - started
            if index >= warmup:
                samples[name].append(elapsed)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def emit(name: str, figures: dict[str, Any], lines: list[str], as_json: bool) -> None:
    """Print the figures (human lines, or one JSON object with `lines` inside)."""
    if as_json:
        print(json.dumps({"benchmark": name, "cpu_count": os.cpu_count(), **figures,
                          "lines": lines}))
    else:
        print(f"# {name} (cores: {os.cpu_count()})")
        for line in lines:
            print(line)
