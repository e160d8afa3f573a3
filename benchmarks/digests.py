"""Bundle hashing throughput vs `sha256sum` over the same files.

    python3 benchmarks/digests.py [--rounds N] [--small N] [--big-mb N] [--json]

Generates a workspace in a temporary folder on the same disk as the repository (20,000 small
files of 0.5-8 KiB in 200 folders plus one 120 MB file), then, interleaved, each round:
- artifact_digests: `cto_harness.evidence.bundle.artifact_digests`, the code that hashes every bundle
  file for report.json and artifacts.sha256;
- tree_digest: `cto_harness.fsutil.tree_digest`, the freshness digest of a tree (no cache);
- sha256sum: `find -print0 | xargs -0 sha256sum` over the same files (one process at a time).
Prints medians, throughput (MB/s) and the ratio to sha256sum. The files stay in the page cache
(all three read warm data). Target: the bundle's hashing at least as fast as sha256sum.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import ROOT, arguments, emit, interleaved, median, ms

from cto_harness.evidence.bundle import artifact_digests
from cto_harness.fsutil import tree_digest


def generate(root: Path, small: int, big_mb: int) -> int:
    rng = random.Random(7)
    total = 0
    for index in range(small):
        folder = root / f"d{index % 200:03d}"
        folder.mkdir(exist_ok=True)
        data = rng.randbytes(rng.randint(512, 8192))
        (folder / f"f{index:05d}.txt").write_bytes(data)
        total += len(data)
    chunk = rng.randbytes(1 << 20)
    with open(root / "big.bin", "wb") as handle:
        for index in range(big_mb):
            handle.write(chunk[index:] + chunk[:index])
    return total + big_mb * (1 << 20)


def main() -> int:
    parser = arguments(__doc__, rounds=5)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--big-mb", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cto-bench-digests-", dir=ROOT.parent) as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        size = generate(root, args.small, args.big_mb)
        listing = subprocess.run(["find", ".", "-type", "f", "-print0"], cwd=root,
                                 capture_output=True, check=True).stdout
        files = listing.count(b"\0")

        def sha256sum() -> None:
            subprocess.run(["xargs", "-0", "sha256sum"], cwd=root, input=listing,
                           capture_output=True, check=True)

        digests: dict[str, str] = {}
        samples = interleaved({
            "artifact_digests": lambda: digests.update(artifact_digests(root, exclude=frozenset())),
            "tree_digest": lambda: tree_digest(root),
            "sha256sum": sha256sum,
        }, args.rounds)
        # The harness's digests are sha256sum's.
        check = subprocess.run(["sha256sum", "big.bin"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.split()[0]
        assert digests["big.bin"] == check and len(digests) == files
    med = {k: median(v) for k, v in samples.items()}
    mb = size / 1e6
    figures = {"files": files, "bytes": size, "rounds": args.rounds,
               **{f"{k}_ms": v * 1000 for k, v in med.items()},
               **{f"{k}_mb_per_s": mb / v for k, v in med.items()},
               "artifact_digests_vs_sha256sum": med["sha256sum"] / med["artifact_digests"],
               "tree_digest_vs_sha256sum": med["sha256sum"] / med["tree_digest"]}
    figures["target_met"] = figures["artifact_digests_vs_sha256sum"] >= 1.0
    lines = [f"workspace: {files} files, {mb:.0f} MB; rounds: {args.rounds} (interleaved), medians"]
    for key in ("artifact_digests", "tree_digest", "sha256sum"):
        ratio = med["sha256sum"] / med[key]
        lines.append(f"{key}: {ms(med[key])}, {mb / med[key]:.0f} MB/s "
                     f"({ratio:.2f}x sha256sum's throughput)")
    lines.append(f"target (bundle hashing >= sha256sum): "
                 f"{'met' if figures['target_met'] else 'MISSED'}")
    emit("digests", figures, lines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
