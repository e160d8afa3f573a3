"""Run every benchmark and regenerate benchmarks/RESULTS.md.

    python3 benchmarks/run_all.py [--quick] [--out benchmarks/RESULTS.md]

Each benchmark runs as its own process (`<python> benchmarks/<name>.py --json ...`), one after the
other; each measures the harness and its reference interleaved in that one process and reports
medians and ratios. RESULTS.md states the machine's cores, the date, every figure with the
command that produced it, and the targets with met/missed. `--quick` uses fewer rounds (for a
smoke check; the committed RESULTS.md is a full run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL = {
    "startup": ["--rounds", "15"],
    "overhead": ["--rounds", "9"],
    "digests": ["--rounds", "5"],
    "snapshot": ["--rounds", "3"],
    "suite_scaling": ["--runs", "20", "--rounds", "3", "--ray"],
}
QUICK = {
    "startup": ["--rounds", "3"],
    "overhead": ["--rounds", "3"],
    "digests": ["--rounds", "2", "--small", "2000", "--big-mb", "12"],
    "snapshot": ["--rounds", "1", "--sizes", "1000,10000"],
    "suite_scaling": ["--runs", "6", "--rounds", "1", "--ray"],
}


def run(name: str, extra: list[str]) -> tuple[str, dict[str, Any]]:
    argv = [sys.executable, str(HERE / f"{name}.py"), *extra, "--json"]
    shown = " ".join(["python3", f"benchmarks/{name}.py", *extra])
    print(f"run_all: {shown}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{shown} failed:\n{out.stderr}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["lines"].append(f"(1-minute load average: {load_before:.2f} before, "
                         f"{os.getloadavg()[0]:.2f} after, on {os.cpu_count()} cores)")
    return shown, data


def targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool, str]]:
    rows = []
    if "overhead" in results:
        cases = results["overhead"]["cases"]
        worst = max(cases.values(), key=lambda c: c["execute_run_overhead_ms"])
        rows.append(("fake-lane overhead <= max(250 ms, 0.5x bare), execute_run",
                     "; ".join(f"{k}: +{v['execute_run_overhead_ms']:.0f} ms "
                               f"({v['execute_run_ratio']:.2f}x)" for k, v in cases.items()),
                     all(c["execute_run_target_met"] for c in cases.values()),
                     f"worst +{worst['execute_run_overhead_ms']:.0f} ms"))
        rows.append(("fake-lane overhead <= max(250 ms, 0.5x bare), CLI run-case.sh",
                     "; ".join(f"{k}: +{v['cli_overhead_ms']:.0f} ms ({v['cli_ratio']:.2f}x)"
                               for k, v in cases.items()),
                     all(c["cli_target_met"] for c in cases.values()), ""))
    if "startup" in results:
        st = results["startup"]
        rows.append(("a fake run's imports <= 150 ms over the interpreter",
                     f"+{st['run_imports_over_interpreter_ms']:.0f} ms (cto-harness --version "
                     f"{st['version_ms']:.0f} ms; bytecode stale for "
                     f"{st['stale_bytecode_modules']} modules)", st["budget_met"], ""))
    if "digests" in results:
        d = results["digests"]
        rows.append(("bundle hashing throughput >= sha256sum",
                     f"artifact_digests {d['artifact_digests_vs_sha256sum']:.2f}x sha256sum "
                     f"(tree_digest {d['tree_digest_vs_sha256sum']:.2f}x)", d["target_met"], ""))
    if "snapshot" in results:
        s = results["snapshot"]
        largest = max(s["sizes"], key=int)
        rows.append((f"snapshot+diff at {int(largest):,} files <= 2x git status --porcelain",
                     f"{s['sizes'][largest]['harness_vs_git_status']:.1f}x git status, "
                     f"{s['sizes'][largest]['harness_vs_git_diff_no_index']:.2f}x git diff "
                     f"--no-index", s["target_met"], ""))
    if "suite_scaling" in results:
        sc = results["suite_scaling"]
        rows.append(("--jobs 2 >= 1.7x the throughput of --jobs 1",
                     f"{sc['throughput_ratio']:.2f}x", sc["target_met"], ""))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--only", nargs="*", choices=list(FULL))
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    results: dict[str, dict[str, Any]] = {}
    commands: dict[str, str] = {}
    for name, extra in plan.items():
        if args.only and name not in args.only:
            continue
        commands[name], results[name] = run(name, extra)
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    lines = [
        "# Benchmark results",
        "",
        "Regenerate with `python3 benchmarks/run_all.py` (about ten minutes on 2 cores). Every "
        "figure is a median of rounds in which the harness and its reference ran interleaved in "
        "one process, so ratios are meaningful on a shared, noisy machine; absolute times are not "
        "comparable between runs.",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        + (" (quick mode: fewer rounds and smaller sizes)" if args.quick else ""),
        f"- machine: {os.cpu_count()} cores (`os.cpu_count()`), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, {git}, commit {head}",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for target, measured, met, _note in targets(results):
        lines.append(f"| {target} | {measured} | {'met' if met else '**missed**'} |")
    for name, data in results.items():
        lines += ["", f"## {name}", "", f"Command: `{commands[name]}`", "", "```"]
        lines += data["lines"]
        lines += ["```"]
    notes = HERE / "NOTES.md"
    if notes.is_file():
        lines += ["", notes.read_text(encoding="utf-8").strip()]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"run_all: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
