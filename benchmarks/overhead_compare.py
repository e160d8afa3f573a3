"""Did a change make the fake lane slower? The whole run of this checkout against another
revision, interleaved in one process.

    python3 benchmarks/overhead_compare.py [--base REV] [--cli [--bytecode]] [--rounds N]
                                           [--json] [CASE ...]

`--base` (default `main`) is exported with `git archive` into a temporary folder. By default each
side runs in a worker process of its own (this interpreter, that side's `src/` first on sys.path,
imports paid once, as `overhead.py`'s `execute_run` figure). With `--cli` every run is
`harness/evals/run-case.sh CASE` of that side, a new interpreter each time (as `overhead.py`'s
`cli` figure, under this checkout's `.venv`), and the bare verification command joins the rounds,
so each side's overhead over it comes from the same rounds. Bytecode is as each tree has it (this
checkout: as `make install` left it; the export: none, as a fresh clone before its first run
where PYTHONDONTWRITEBYTECODE is set); `--bytecode` compiles both first, to compare the code
alone. The rounds alternate base, head, base, head... (the first of each pair rotating), so both
sides see the same load. Per case it prints the medians and the median of the per-round
differences (head - base). Budgets: growth <= 20 ms (issue 11); with `--cli`, head's overhead
over the bare command <= 250 ms (issue 10).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _bench import ROOT, arguments, emit, median, solved_copy

from cto_harness.core.fixtures import case_directory, load_case
from cto_harness.core.testrun import verification_env

CLI_BUDGET_S = 0.250

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
    """One revision, measured through a long-lived worker (`execute_run`, imports paid once)."""

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


class CliSide:
    """One revision, measured as a user types it: that tree's `run-case.sh`, a new process."""

    def __init__(self, tree: Path, env: dict[str, str]) -> None:
        self.tree = tree
        self.env = {**env, "PYTHONPATH": str(tree / "src")}

    def run(self, case_id: str) -> float:
        started = time.perf_counter()
        done = subprocess.run([str(self.tree / "harness" / "evals" / "run-case.sh"), case_id,
                               "--json"], env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        verdict = json.loads(done.stdout)["verdict"] if done.stdout.strip() else done.stderr
        if verdict != "pass":
            raise SystemExit(f"{self.tree}: {case_id}: verdict {verdict!r}, not pass")
        return elapsed

    def close(self) -> None:
        pass


class Bare:
    """The case's verification command by hand in a solved copy (the floor both sides share)."""

    def __init__(self, case_id: str, into: Path) -> None:
        case = load_case(case_directory(ROOT / "harness", case_id))
        self.command = list(case.spec.verification.command)
        self.copy = solved_copy(case, into / f"solved-{case_id}")
        self.env = verification_env(into / f"home-{case_id}")

    def run(self) -> float:
        started = time.perf_counter()
        subprocess.run(self.command, cwd=self.copy, env=self.env, stdin=subprocess.DEVNULL,
                       capture_output=True, check=True)
        return time.perf_counter() - started


def export(rev: str, into: Path) -> None:
    archive = into.with_suffix(".tar")
    with open(archive, "wb") as out:
        subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="tar")
    archive.unlink()
    # The exported tree runs under this checkout's interpreter and Bun (harness/bin/python).
    for tools in (".venv", ".tools"):
        if (ROOT / tools).exists():
            (into / tools).symlink_to(ROOT / tools)


def main() -> int:
    parser = arguments(__doc__, rounds=15)
    parser.add_argument("cases", nargs="*", default=["r1-string-slugify"],
                        help="fixture cases (default: r1-string-slugify)")
    parser.add_argument("--base", default="main", help="the revision to compare with (main)")
    parser.add_argument("--cli", action="store_true",
                        help="measure run-case.sh (a new interpreter per run), with the bare "
                             "verification command")
    parser.add_argument("--bytecode", action="store_true",
                        help="with --cli: compile both trees' src/ first (the code alone)")
    args = parser.parse_args()
    base_commit = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
    figures: dict[str, dict[str, float]] = {}
    what = "run-case.sh" if args.cli else "execute_run"
    lines = [f"{what}: base {args.base} ({base_commit}) vs this checkout; {args.rounds} "
             f"interleaved pairs per case after one warm-up each, medians"
             + ("; bytecode compiled on both sides" if args.bytecode else "")]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cto-bench-compare-") as tmp:
        base = Path(tmp) / "base"
        export(args.base, base)
        if args.bytecode:
            for tree in (base, ROOT):
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "src")],
                               check=True, capture_output=True)
        env = {**os.environ, "CTO_HARNESS_HOME": str(Path(tmp) / "home"),
               "CTO_HARNESS_RUNS_DIR": str(Path(tmp) / "runs")}
        kind = CliSide if args.cli else Side
        sides = {"base": kind(base, env), "head": kind(ROOT, env)}
        try:
            for case_id in args.cases:
                bare = Bare(case_id, Path(tmp)) if args.cli else None
                for side in sides.values():
                    side.run(case_id)  # warm-up: imports, caches
                samples: dict[str, list[float]] = {"base": [], "head": [], "bare": []}
                for index in range(args.rounds):
                    order = ("base", "head") if index % 2 == 0 else ("head", "base")
                    for name in order:
                        samples[name].append(sides[name].run(case_id))
                    if bare is not None:
                        samples["bare"].append(bare.run())
                diffs = [h - b for h, b in zip(samples["head"], samples["base"], strict=True)]
                b, h, d = median(samples["base"]), median(samples["head"]), median(diffs)
                figures[case_id] = {"base_ms": b * 1000, "head_ms": h * 1000,
                                    "growth_ms": d * 1000}
                line = (f"{case_id}: base {b * 1000:.1f} ms | head {h * 1000:.1f} ms | "
                        f"growth (median of paired differences) {d * 1000:+.1f} ms")
                if bare is not None:
                    floor = median(samples["bare"])
                    figures[case_id] |= {"bare_ms": floor * 1000,
                                         "base_overhead_ms": (b - floor) * 1000,
                                         "head_overhead_ms": (h - floor) * 1000}
                    line += (f" | bare {floor * 1000:.1f} ms: overhead base +{(b - floor) * 1000:.0f}"
                             f" ms, head +{(h - floor) * 1000:.0f} ms"
                             f"{'' if h - floor <= CLI_BUDGET_S else ' (over the 250 ms target)'}")
                elif d > 0.020:
                    line += " (over the 20 ms budget)"
                lines.append(line)
        finally:
            for side in sides.values():
                side.close()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines.append(f"(1-minute load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} "
                 f"after, on {os.cpu_count()} cores; {when})")
    emit("overhead_compare", {"base": base_commit, "rounds": args.rounds, "cli": args.cli,
                              "cases": figures}, lines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
