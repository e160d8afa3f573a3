"""Did a change make the fake lane slower? The whole run of this checkout against another
revision, interleaved in one process.

    python3 benchmarks/overhead_compare.py [--base REV] [--rounds N] [--json] [CASE ...]

`--base` (default `main`) is exported with `git archive` into a temporary folder. Each side runs
in a worker process of its own (this interpreter, that side's `src/` first on sys.path, imports
paid once, as `overhead.py`'s `execute_run` figure) and the rounds alternate base, head, base,
head... (the first of each pair rotating), so both sides see the same load. Per case it prints the
medians and the median of the per-round differences (head - base): the growth of the overhead,
since the bare verification command is the same on both sides. The issue-11 budget: growth
<= 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _bench import ROOT, emit, median

# The worker: one execute_run per line read, its wall time (and verdict) written back.
WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from cto_harness.core.run import execute_run
from pathlib import Path
root = Path(sys.argv[2])
for line in sys.stdin:
    started = time.perf_counter()
    verdict = execute_run(line.strip(), "fake", harness_root=root).report.verdict
    print(json.dumps([time.perf_counter() - started, verdict]), flush=True)
"""


class Side:
    def __init__(self, tree: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tree / "src"), str(tree / "harness")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree)

    def run(self, case_id: str) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(case_id + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a worker stopped (exit {self.proc.wait()})")
        seconds, verdict = json.loads(line)
        if verdict != "pass":
            raise SystemExit(f"{case_id}: verdict {verdict}, not pass")
        return float(seconds)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)


def export(rev: str, into: Path) -> None:
    archive = into.with_suffix(".tar")
    with open(archive, "wb") as out:
        subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="tar")
    archive.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", default=["r1-string-slugify"],
                        help="fixture cases (default: r1-string-slugify)")
    parser.add_argument("--base", default="main", help="the revision to compare with (main)")
    parser.add_argument("--rounds", type=int, default=15, help="pairs of runs per case (15)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    base_commit = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
    figures: dict[str, dict[str, float]] = {}
    lines = [f"base {args.base} ({base_commit}) vs this checkout; {args.rounds} interleaved "
             f"pairs per case after one warm-up each, medians"]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cto-bench-compare-") as tmp:
        base = Path(tmp) / "base"
        export(args.base, base)
        env = {**os.environ, "CTO_HARNESS_HOME": str(Path(tmp) / "home"),
               "CTO_HARNESS_RUNS_DIR": str(Path(tmp) / "runs")}
        sides = {"base": Side(base, env), "head": Side(ROOT, env)}
        try:
            for case_id in args.cases:
                for side in sides.values():
                    side.run(case_id)  # warm-up: imports, caches
                samples: dict[str, list[float]] = {"base": [], "head": []}
                for index in range(args.rounds):
                    order = ("base", "head") if index % 2 == 0 else ("head", "base")
                    for name in order:
                        samples[name].append(sides[name].run(case_id))
                diffs = [h - b for h, b in zip(samples["head"], samples["base"], strict=True)]
                b, h, d = median(samples["base"]), median(samples["head"]), median(diffs)
                figures[case_id] = {"base_ms": b * 1000, "head_ms": h * 1000,
                                    "growth_ms": d * 1000}
                lines.append(f"{case_id}: base {b * 1000:.1f} ms | head {h * 1000:.1f} ms | "
                             f"growth (median of paired differences) {d * 1000:+.1f} ms"
                             f"{'' if d <= 0.020 else ' (over the 20 ms budget)'}")
        finally:
            for side in sides.values():
                side.close()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines.append(f"(1-minute load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} "
                 f"after, on {os.cpu_count()} cores; {when})")
    emit("overhead_compare", {"base": base_commit, "rounds": args.rounds, "cases": figures},
         lines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
