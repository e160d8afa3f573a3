#!/usr/bin/env python3
"""Median per-run cost of each isolation tier on the fake lane (r1-string-slugify), and of the
canary: `python3 benchmarks/isolation_cost.py [--runs N] [--repo DIR | --base REV]`.

Each side runs in a worker process of its own (this interpreter, that side's `src/` first on
sys.path, its own `CTO_HARNESS_HOME`), and the tiers are interleaved round by round, so drift in
the machine's load hits every tier alike.

- `--repo DIR` measures another checkout's code and harness instead of this one.
- `--base REV` (e.g. `main`) measures REV (exported with `git archive`) and this checkout in the
  same rounds, the two sides alternating (the first of each pair rotating), and adds the median
  of the per-round differences (this - REV) per tier: the before/after of a change, taken once,
  under one load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from overhead_compare import export  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parents[1]
CASE = "r1-string-slugify"
# The worker: one run per tier read from stdin, its figures written back as one JSON line.
WORKER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from cto_harness.core.run import execute_run
from cto_harness.sandbox.probe import probe
from cto_harness.settings import Settings
found = probe()
print(json.dumps({"bwrap": found.bwrap_ok, "bwrap_version": found.bwrap_version,
                  "landlock": found.landlock_abi}), flush=True)
for line in sys.stdin:
    env = {**os.environ, "CTO_HARNESS_ISOLATION": line.strip()}
    started = time.perf_counter()
    report = execute_run(sys.argv[3], harness_root=Path(sys.argv[2]),
                         settings=Settings.from_env(env), environ=env).report
    print(json.dumps({"run": (time.perf_counter() - started) * 1000, "verdict": report.verdict,
                      "blockers": [b.code for b in report.blockers],
                      "canary": float(report.isolation.canary.get("duration_ms", 0)),
                      "provider": report.timing.provider_ms or 0,
                      "verify": report.timing.verification_ms or 0}), flush=True)
"""
FIGURES = ("run", "canary", "provider", "verify")


class Side:
    """A worker measuring one checkout."""

    def __init__(self, tree: Path, home: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTO_HARNESS_")}
        env["CTO_HARNESS_HOME"] = str(home)
        self.tree = tree
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tree / "src"), str(tree / "harness"), CASE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree)
        self.probe = self._answer()

    def _answer(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the worker for {self.tree} stopped (exit {self.proc.wait()})")
        answer: dict[str, object] = json.loads(line)
        return answer

    def run(self, tier: str) -> dict[str, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(tier + "\n")
        self.proc.stdin.flush()
        answer = self._answer()
        if answer["verdict"] != "pass":
            raise SystemExit(f"{self.tree} on {tier}: verdict {answer['verdict']} "
                             f"{answer['blockers']}, not pass")
        return {name: float(answer[name]) for name in FIGURES}  # type: ignore[arg-type]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="rounds after a warm-up (9)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--repo", type=Path, default=ROOT,
                       help="the checkout whose src/ and harness/ are measured (default: this)")
    where.add_argument("--base", help="a revision measured against this checkout, interleaved")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cto-bench-isolation-") as tmp:
        if args.base:
            export(args.base, Path(tmp) / "base")
            trees = {args.base: Path(tmp) / "base", "this": ROOT}
        else:
            trees = {"this": args.repo.resolve()}
        sides: dict[str, Side] = {}
        try:
            for name, tree in trees.items():
                sides[name] = Side(tree, Path(tmp) / f"home-{len(sides)}")
            found = sides["this"].probe
            tiers = [t for t, ok in (("bwrap", found["bwrap"]), ("landlock", found["landlock"]),
                                     ("none", True)) if ok]
            samples = {(s, t): {f: [] for f in FIGURES} for s in sides for t in tiers}
            names = list(sides)
            for round_ in range(args.runs + 1):  # round 0 warms caches and creates the keys
                order = names[round_ % len(names):] + names[:round_ % len(names)]
                for tier in tiers:
                    for name in order:
                        figures = sides[name].run(tier)
                        if round_ > 0:
                            for f in FIGURES:
                                samples[(name, tier)][f].append(figures[f])
        finally:
            for side in sides.values():
                side.close()
    load_after = os.getloadavg()
    med = statistics.median
    print(f"fake lane {CASE}, {args.runs} rounds after a warm-up, medians in ms "
          f"(bwrap {found['bwrap_version'] or 'absent'}, Landlock ABI {found['landlock']}, "
          f"{os.cpu_count()} cores)")
    for name, tree in trees.items():
        print(f"\n{name}: {tree if name == 'this' or not args.base else 'git archive ' + name}")
        print(f"{'tier':9} {'run':>8} {'vs none':>8} {'canary':>8} {'provider':>9} {'verify':>8}")
        none = med(samples[(name, "none")]["run"])
        for tier in tiers:
            s = samples[(name, tier)]
            print(f"{tier:9} {med(s['run']):8.0f} {med(s['run']) - none:+8.0f} "
                  f"{med(s['canary']):8.1f} {med(s['provider']):9.0f} {med(s['verify']):8.0f}")
    if args.base:
        print(f"\nthis - {args.base}, median of the per-round differences (ms):")
        for tier in tiers:
            diffs = {f: med([h - b for h, b in zip(samples[("this", tier)][f],
                                                   samples[(args.base, tier)][f], strict=True)])
                     for f in FIGURES}
            print(f"{tier:9} run {diffs['run']:+8.0f}  canary {diffs['canary']:+8.1f}  "
                  f"provider {diffs['provider']:+7.0f}  verify {diffs['verify']:+7.0f}")
    print(f"\n(load average {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f} "
          f"before, {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} after; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
