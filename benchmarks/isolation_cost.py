#!/usr/bin/env python3
"""Median per-run cost of each isolation tier on the fake lane (r1-string-slugify), and of the
canary, measured side by side in one process (tiers interleaved round by round, so drift in the
machine's load hits every tier alike): `python3 benchmarks/isolation_cost.py [--runs N]
[--repo DIR]`.

`--repo` measures another checkout's code and harness instead of this one (e.g. `git archive` of
the revision before a change, unpacked): the before/after figures of docs come from two runs of
this same script, one with `--repo` at the old revision."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose src/ and harness/ are measured (default: this)")
    args = parser.parse_args()
    repo = args.repo.resolve()
    sys.path.insert(0, str(repo / "src"))
    from cto_harness.core.run import execute_run
    from cto_harness.sandbox.isolation import probe
    from cto_harness.settings import Settings

    print(f"measuring {repo}", flush=True)
    found = probe()
    tiers = [t for t, ok in (("bwrap", found.bwrap_ok), ("landlock", found.landlock_abi >= 1),
                             ("none", True)) if ok]
    total: dict[str, list[float]] = {t: [] for t in tiers}
    provider: dict[str, list[float]] = {t: [] for t in tiers}
    verification: dict[str, list[float]] = {t: [] for t in tiers}
    canary: dict[str, list[float]] = {t: [] for t in tiers}
    with tempfile.TemporaryDirectory(prefix="cto-bench-") as tmp:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CTO_HARNESS_")}
        base["CTO_HARNESS_HOME"] = str(Path(tmp) / "home")
        for round_ in range(args.runs + 1):  # round 0 warms caches and creates the key
            for tier in tiers:
                env = {**base, "CTO_HARNESS_ISOLATION": tier}
                started = time.perf_counter()
                result = execute_run("r1-string-slugify", harness_root=repo / "harness",
                                     settings=Settings.from_env(env), environ=env)
                elapsed = (time.perf_counter() - started) * 1000
                report = result.report
                assert report.verdict == "pass", (tier, report.blockers)
                if round_ == 0:
                    continue
                total[tier].append(elapsed)
                provider[tier].append(report.timing.provider_ms or 0)
                verification[tier].append(report.timing.verification_ms or 0)
                canary[tier].append(float(report.isolation.canary.get("duration_ms", 0)))
    med = statistics.median
    print(f"fake lane r1-string-slugify, {args.runs} runs per tier, medians in ms "
          f"(bwrap {found.bwrap_version or 'absent'}, Landlock ABI {found.landlock_abi}, "
          f"{os.cpu_count()} cores)")
    print(f"{'tier':9} {'run':>8} {'vs none':>8} {'canary':>8} {'provider':>9} {'verify':>8}")
    for tier in tiers:
        print(f"{tier:9} {med(total[tier]):8.0f} {med(total[tier]) - med(total['none']):+8.0f} "
              f"{med(canary[tier]):8.1f} {med(provider[tier]):9.0f} "
              f"{med(verification[tier]):8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
