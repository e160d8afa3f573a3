"""Suite scaling: N fake runs at --jobs 1 vs --jobs 2 (throughput ratio); with --ray, the Ray
executor on 1 and 2 worker nodes against the local executor.

    python3 benchmarks/suite_scaling.py [--runs 20] [--rounds N] [--ray] [--json]

Each round runs `cto-harness suite r1-string-slugify --repeat N` (N fake runs) once with one
worker process and once with two, in a rotating order, each in a fresh suite folder, through the
CLI as a user would. Prints the median wall time of each, runs per second and the ratio.
Target: --jobs 2 at least 1.7x the throughput of --jobs 1.

`--ray` (needs `pip install 'cto-harness[ray]'`) then re-executes this script inside a network
namespace with only `lo` (`unshare --net`), starts a local cluster (a 0-CPU head and one 1-CPU
worker node, each with its own CTO_HARNESS_HOME; a second worker is added for the second half)
and runs, interleaved per round, the same N runs through `run_suite` with the local executor
(`--jobs` = worker nodes) and the Ray executor. It prints runs/s of each and the per-run
overhead Ray adds (1 worker vs --jobs 1), split into what the driver measures directly:
connecting, unpacking the bundle archives, verifying each bundle (digests and signature), and
the rest (scheduling, object transfer, the node's own install check).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import ROOT, arguments, emit, interleaved, median, ms

INSIDE_FLAG = "--ray-inside-namespace"


def main() -> int:
    parser = arguments(__doc__, rounds=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--case", default="r1-string-slugify")
    parser.add_argument("--ray", action="store_true",
                        help="also measure the Ray executor (1 and 2 worker nodes)")
    parser.add_argument(INSIDE_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ray_inside_namespace:
        print(json.dumps(_ray_inside(args)))
        return 0
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
    if args.ray:
        ray_figures, ray_lines = _ray_part(args)
        figures["ray"] = ray_figures
        lines += ray_lines
    emit("suite_scaling", figures, lines, args.json)
    return 0


def _ray_part(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The Ray half, in a loopback-only network namespace (a child process)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return {"skipped": "ray not installed"}, [
            "ray executor: not measured (Ray is not installed: pip install 'cto-harness[ray]')"]
    from cto_harness.executors.local_cluster import loopback_namespace_argv

    argv = [*loopback_namespace_argv(), sys.executable, str(Path(__file__).resolve()),
            INSIDE_FLAG, "--runs", str(args.runs), "--rounds", str(args.rounds), "--case",
            args.case]
    out = subprocess.run(argv, capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if out.returncode != 0:
        raise SystemExit(f"the Ray half failed:\n{out.stderr[-4000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    n = args.runs
    lines = [f"ray executor: the same {n} runs through run_suite, local executor vs Ray "
             f"(0-CPU head + 1-CPU worker nodes, one machine, loopback namespace); medians"]
    for workers in ("1", "2"):
        f = figures["workers"][workers]
        lines.append(f"{workers} worker node(s): local --jobs {workers} {ms(f['local_s'])} "
                     f"({n / f['local_s']:.2f} runs/s) | ray {ms(f['ray_s'])} "
                     f"({n / f['ray_s']:.2f} runs/s, {f['local_s'] / f['ray_s']:.2f}x local)")
    speedup = figures["workers"]["1"]["ray_s"] / figures["workers"]["2"]["ray_s"]
    lines.append(f"ray 2 nodes vs 1 node: {speedup:.2f}x the throughput")
    o = figures["overhead"]
    added = o["scheduling_transfer_ms"] + o["node_side_ms"] + o["unpack_ms"] + o["verify_ms"]
    lines.append(f"per-run overhead of ray (1 node, medians per run): {added:.0f} ms = "
                 f"scheduling + transfer {o['scheduling_transfer_ms']:.0f} ms (submit-to-result "
                 f"{o['latency_ms']:.0f} ms minus the task's {o['task_ms']:.0f} ms) + on the "
                 f"node around execute_run {o['node_side_ms']:.0f} ms (install check, pack, scratch "
                 f"removal) + unpack "
                 f"{o['unpack_ms']:.1f} ms + verify at the driver {o['verify_ms']:.1f} ms; "
                 f"plus {o['connect_ms']:.0f} ms per suite to connect")
    lines.append(f"the run itself: {o['node_run_ms']:.0f} ms on the node vs "
                 f"{o['local_run_ms']:.0f} ms locally; bundle archive {o['archive_kb']:.0f} KiB; "
                 f"wall-time difference per run (1 node vs --jobs 1): "
                 f"{o['wall_diff_ms_per_run']:.0f} ms")
    return figures, lines


def _ray_inside(args: argparse.Namespace) -> dict:
    """Inside the namespace: the cluster, the interleaved suites, the overhead split."""
    import time

    from cto_harness.core.suite import LocalExecutor, _recorded_key, read_bundle, run_suite
    from cto_harness.evidence.layout import bundle_files
    from cto_harness.executors.archive import pack_tree
    from cto_harness.executors.local_cluster import LocalCluster, bring_up_loopback
    from cto_harness.executors.ray_executor import RayExecutor

    bring_up_loopback()
    base = Path(tempfile.mkdtemp(prefix="ctoray-", dir="/tmp"))
    os.environ["CTO_HARNESS_HOME"] = str(base / "driver")
    harness = ROOT / "harness"
    counter = iter(range(10**6))
    last: dict[str, object] = {}
    figures: dict = {"runs": args.runs, "rounds": args.rounds, "workers": {}}
    try:
        with LocalCluster(base / "c", workers=1) as cluster:
            def suite(executor: object, jobs: int | None, kind: str) -> None:
                folder = base / f"suite-{next(counter)}"
                out = run_suite([args.case], harness_root=harness, repeat=args.runs, jobs=jobs,
                                suite_dir=folder, progress=None, executor=executor)  # type: ignore[arg-type]
                assert out.exit_code == 0 and out.data["totals"]["passes"] == args.runs
                last[kind] = (folder, out.data, executor)

            for workers in (1, 2):
                if workers == 2:
                    cluster.add_worker()
                    cluster.cluster.wait_for_nodes()
                samples = interleaved(
                    {"local": lambda w=workers: suite(LocalExecutor(), w, "local"),
                     "ray": lambda: suite(RayExecutor(address=cluster.address), None, "ray")},
                    args.rounds, warmup=1)
                figures["workers"][str(workers)] = {"local_s": median(samples["local"]),
                                                    "ray_s": median(samples["ray"])}
                if workers == 1:
                    one = last  # the overhead split is for the 1-node, 1-lane comparison
                    folder, data, executor = one["ray"]  # type: ignore[misc]
                    _lfolder, ldata, _ = one["local"]  # type: ignore[misc]
                    verify_s, sizes = [], []
                    for row in data["runs"]:
                        bundle = folder / row["run_dir"]
                        key = _recorded_key(folder, bundle)
                        began = time.perf_counter()
                        assert read_bundle(bundle, key) is not None
                        verify_s.append(time.perf_counter() - began)
                        sizes.append(len(pack_tree(bundle, bundle_files(bundle))))
                    import ray

                    began = time.perf_counter()
                    ray.init(address=cluster.address, log_to_driver=False)
                    ray.shutdown()
                    connect_s = time.perf_counter() - began
                    t = executor.timings
                    latency = median([x["latency_ms"] for x in t])
                    task = median([x["task_ms"] for x in t])
                    around = median([x["task_ms"] - x["exec_ms"] for x in t])
                    run = median([x["run_ms"] for x in t])
                    f = figures["workers"]["1"]
                    figures["overhead"] = {
                        "wall_diff_ms_per_run": (f["ray_s"] - f["local_s"]) * 1000 / args.runs,
                        "connect_ms": connect_s * 1000,
                        "latency_ms": latency, "task_ms": task, "node_run_ms": run,
                        "scheduling_transfer_ms": latency - task,
                        "node_side_ms": around,
                        "unpack_ms": median([x["unpack_ms"] for x in t]),
                        "verify_ms": median(verify_s) * 1000,
                        "archive_kb": median([float(x) for x in sizes]) / 1024,
                        "local_run_ms": median([r["duration_ms"] for r in ldata["runs"]]),
                    }
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return figures


if __name__ == "__main__":
    sys.exit(main())
