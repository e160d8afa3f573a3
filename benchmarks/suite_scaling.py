"""Suite scaling: N fake runs at --jobs 1 vs --jobs 2 (throughput ratio).

    python3 benchmarks/suite_scaling.py [--runs 20] [--rounds N] [--json]

Each round runs `cto-harness suite r1-string-slugify --repeat N` (N fake runs) once with one
worker process and once with two, in a rotating order, each in a fresh suite folder, through the
CLI as a user would. Prints the median wall time of each, runs per second and the ratio.
Target: --jobs 2 at least 1.7x the throughput of --jobs 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import ROOT, emit, interleaved, median, ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--case", default="r1-string-slugify")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cto-bench-suite-") as tmp:
        base = Path(tmp)
        env = {**os.environ, "CTO_HARNESS_HOME": str(base / "home"),
               "PYTHONPATH": str(ROOT / "src")}
        counter = iter(range(10**6))

        def suite(jobs: int) -> None:
            folder = base / f"suite-{next(counter)}"
            out = subprocess.run(
                [sys.executable, "-m", "cto_harness", "suite", args.case, "--repeat",
                 str(args.runs), "--jobs", str(jobs), "--suite-dir", str(folder), "--json",
                 "--harness-root", str(ROOT / "harness")],
                env=env, capture_output=True, text=True, check=False)
            data = json.loads(out.stdout)
            assert out.returncode == 0 and data["totals"]["passes"] == args.runs, out.stderr

        samples = interleaved({"jobs1": lambda: suite(1), "jobs2": lambda: suite(2)},
                              args.rounds, warmup=0)
    one, two = median(samples["jobs1"]), median(samples["jobs2"])
    ratio = one / two
    figures = {"runs": args.runs, "rounds": args.rounds, "jobs1_ms": one * 1000,
               "jobs2_ms": two * 1000, "jobs1_runs_per_s": args.runs / one,
               "jobs2_runs_per_s": args.runs / two, "throughput_ratio": ratio,
               "target_met": ratio >= 1.7}
    lines = [f"{args.runs} fake runs of {args.case}; rounds: {args.rounds} (interleaved), medians",
             f"--jobs 1: {ms(one)} ({args.runs / one:.2f} runs/s)",
             f"--jobs 2: {ms(two)} ({args.runs / two:.2f} runs/s)",
             f"throughput ratio: {ratio:.2f}x; target (>= 1.7x): "
             f"{'met' if ratio >= 1.7 else 'MISSED'}"]
    emit("suite_scaling", figures, lines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
