"""Snapshot and diff vs git's own status and diff, on 1k, 10k and 100k-file workspaces.

    python3 benchmarks/snapshot.py [--sizes 1000,10000,100000] [--rounds N] [--json]

Each workspace (small files in folders of 100) is a git repository with a committed, warm index,
beside a pristine copy. Each round, on the workspace:
- harness: a new `Snapshot` (private object store and index, as in a run): `take_before`, then
  a provider-like change (10 edits, 5 new files, 5 deletions, a mode change, a new symlink),
  `take_after`, `changes`, `patch`, and the freshness digest of the result (`Snapshot.digest`,
  from the same pass; checked equal to `fsutil.tree_digest` once per size);
- git status: `git status --porcelain` on the changed workspace (its index is warm: stat only);
- git diff --no-index: the pristine copy against the changed workspace.
The change is undone after each round. Prints medians, the harness/`git status` ratio and the
time per file at each size (a flat per-file time is a linear growth curve).
Target: the harness within 2x of `git status --porcelain` at 100k files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import ROOT, arguments, emit, median, ms

from cto_harness.core.workspace import Snapshot
from cto_harness.fsutil import tree_digest
from cto_harness.git import git_env


def generate(root: Path, count: int) -> None:
    for index in range(count):
        folder = root / f"pkg{index // 100:04d}"
        if index % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"mod{index % 100:02d}.py").write_text(
            f"# module {index}\nVALUE = {index}\n\n\ndef f{index}(x):\n    return x + {index}\n")


def mutate(ws: Path) -> None:
    for i in range(10):
        (ws / f"pkg0000/mod{i:02d}.py").write_text(f"EDITED = {i}\n")
    for i in range(5):
        (ws / f"pkg0000/new{i}.py").write_text(f"NEW = {i}\n")
    for i in range(10, 15):
        (ws / f"pkg0000/mod{i:02d}.py").unlink()
    (ws / "pkg0000/mod20.py").chmod(0o755)
    os.symlink("mod21.py", ws / "pkg0000/link.py")


def restore(ws: Path, pristine: Path) -> None:
    shutil.rmtree(ws / "pkg0000")
    shutil.copytree(pristine / "pkg0000", ws / "pkg0000")


def git(args: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=check)


def measure(base: Path, count: int, rounds: int) -> dict[str, float]:
    pristine, ws, home = base / f"pristine-{count}", base / f"ws-{count}", base / "home"
    generate(pristine, count)
    shutil.copytree(pristine, ws)
    env = git_env(home)
    git(["init", "-q"], ws, env)
    git(["config", "gc.auto", "0"], ws, env)
    git(["add", "-A"], ws, env)
    git(["commit", "-q", "--no-gpg-sign", "-m", "base"], ws, env)
    samples: dict[str, list[float]] = {k: [] for k in ("harness", "before", "after", "digest",
                                                       "git_status", "git_diff_no_index")}
    for index in range(rounds + 1):
        restore(ws, pristine)
        git(["status", "--porcelain"], ws, env)  # the index is warm again after the restore
        state = base / f"snap-{count}-{index}"
        t0 = time.perf_counter()
        snap = Snapshot(ws, state, home)
        snap.take_before()
        t1 = time.perf_counter()
        mutate(ws)
        t2 = time.perf_counter()
        snap.take_after()
        changes = snap.changes()
        snap.patch()
        t3 = time.perf_counter()
        digest = snap.digest()
        t4 = time.perf_counter()
        git(["status", "--porcelain"], ws, env)
        t5 = time.perf_counter()
        git(["diff", "--no-index", "--quiet", str(pristine), str(ws)], base, env, check=False)
        t6 = time.perf_counter()
        assert len(changes) == 22, len(changes)
        if index == 0:  # the digest from the snapshot's pass is the full re-read's
            assert digest == tree_digest(ws, exclude=frozenset({".git"}))
        shutil.rmtree(state)
        if index == 0:
            continue  # warm-up
        samples["before"].append(t1 - t0)
        samples["after"].append(t3 - t2)
        samples["digest"].append(t4 - t3)
        samples["harness"].append((t1 - t0) + (t4 - t2))
        samples["git_status"].append(t5 - t4)
        samples["git_diff_no_index"].append(t6 - t5)
    shutil.rmtree(ws)
    shutil.rmtree(pristine)
    return {k: median(v) for k, v in samples.items()}


def main() -> int:
    parser = arguments(__doc__, rounds=3)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, dict[str, float]] = {}
    lines = [f"rounds: {args.rounds} per size (harness and git interleaved), medians"]
    with tempfile.TemporaryDirectory(prefix="cto-bench-snapshot-", dir=ROOT.parent) as tmp:
        for count in sizes:
            med = measure(Path(tmp), count, args.rounds)
            ratio = med["harness"] / med["git_status"]
            results[str(count)] = {
                **{f"{k}_ms": v * 1000 for k, v in med.items()},
                "harness_vs_git_status": ratio,
                "harness_vs_git_diff_no_index": med["harness"] / med["git_diff_no_index"],
                "harness_us_per_file": med["harness"] / count * 1e6,
                "git_status_us_per_file": med["git_status"] / count * 1e6,
            }
            lines.append(
                f"{count:>6} files: harness {ms(med['harness'])} (before {ms(med['before'])}, "
                f"after+diff+patch {ms(med['after'])}, digest {ms(med['digest'])}) = "
                f"{med['harness'] / count * 1e6:.1f} us/file | git status {ms(med['git_status'])}"
                f" ({ratio:.2f}x) | git diff --no-index {ms(med['git_diff_no_index'])} "
                f"({med['harness'] / med['git_diff_no_index']:.2f}x)")
    largest = str(max(sizes))
    met = results[largest]["harness_vs_git_status"] <= 2.0
    lines.append(f"target (harness <= 2x git status at {largest} files): "
                 f"{'met' if met else 'MISSED'}")
    per_file = [results[str(s)]["harness_us_per_file"] for s in sizes]
    lines.append("growth: " + ", ".join(f"{s}: {p:.1f} us/file" for s, p in zip(sizes, per_file,
                                                                               strict=True)))
    emit("snapshot", {"sizes": results, "target_met": met, "rounds": args.rounds}, lines,
         args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
