"""Time the provider admission route on the stand-in provider (a ~100 MB Bun executable).

    python3 benchmarks/provider_admission.py [--runs N] [--json]

Prints the median over N runs (default 3, at least 3) of:
- build: `build_provider` end to end (clone, bun install, bun run build:binary, probe, store,
  reports, admission record), a fresh clone each time at the same deterministic path;
- admit: `admit_prebuilt` of the built binary into a fresh home (copy, hash, probe, store, record);
- lookup: `lookup_admission` of the stored binary (re-hashes all its bytes, reads the registry).
Needs Bun on PATH (or the project-local copy in .tools/bun).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]
_LOCAL_BUN = ROOT / ".tools" / "bun" / "node_modules" / ".bin"
if shutil.which("bun") is None and (_LOCAL_BUN / "bun").exists():
    os.environ["PATH"] = os.pathsep.join([str(_LOCAL_BUN), os.environ.get("PATH", "")])

from cto_harness.git import commit_all  # noqa: E402
from cto_harness.providers.build import admit_prebuilt, build_provider  # noqa: E402
from cto_harness.providers.policy import (  # noqa: E402
    AcceptedPin,
    default_policy_path,
    load_policy,
)
from cto_harness.providers.registry import lookup_admission  # noqa: E402
from cto_harness.settings import Settings  # noqa: E402

# The stand-in provider's TypeScript source: read as data (copied, built), never imported.
STANDIN_SOURCE = ROOT / "tests" / "standin"


def make_standin_repo(base: Path, origin: str) -> tuple[Path, str]:
    """A git repository of the stand-in (scenario `normal`) with `origin`; (path, commit)."""
    repo = base / "standin"
    shutil.copytree(STANDIN_SOURCE, repo, ignore=shutil.ignore_patterns("node_modules", "dist"))
    (repo / "src" / "scenario.ts").write_text('export const SCENARIO: string = "normal";\n')
    return repo, commit_all(repo, "stand-in (normal)", origin=origin)


def _median_seconds(runs: int, action: Callable[[int], object]) -> tuple[float, list[float]]:
    samples = []
    for index in range(runs):
        started = time.perf_counter()
        action(index)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = max(3, args.runs)
    policy = load_policy(default_policy_path(ROOT / "harness"))
    with tempfile.TemporaryDirectory(prefix="cto-harness-bench-") as tmp:
        base = Path(tmp)
        repo, commit = make_standin_repo(base, policy.source_url)
        # The stand-in's commit is not the policy's pin: record it as an accepted pin.
        policy = policy.model_copy(update={"accepted_pins": [
            *policy.accepted_pins, AcceptedPin(commit=commit, reason="benchmark stand-in")]})
        settings = Settings.from_env({**os.environ, "CTO_HARNESS_HOME": str(base / "home")})

        reports = []
        build_median, build_samples = _median_seconds(runs, lambda _i: reports.append(
            build_provider(str(repo), commit, policy, settings, progress=None)))
        binary = Path(reports[-1].artifact.store_path)
        size = binary.stat().st_size
        reproducible = len({r.artifact.sha256 for r in reports}) == 1

        def admit(index: int) -> None:
            home = Settings.from_env({"CTO_HARNESS_HOME": str(base / f"admit-{index}")})
            admit_prebuilt(binary, policy.source_url, policy.pin, policy, home, progress=None)

        admit_median, admit_samples = _median_seconds(runs, admit)
        lookups = max(5, runs)
        lookup_median, lookup_samples = _median_seconds(
            lookups, lambda _i: lookup_admission(settings, binary))
        assert lookup_admission(settings, binary) is not None

    figures = {
        "runs": runs,
        "binary_bytes": size,
        "rebuilds_byte_identical": reproducible,
        "build_median_s": round(build_median, 3),
        "admit_median_s": round(admit_median, 3),
        "lookup_median_s": round(lookup_median, 3),
        "samples_s": {
            "build": [round(s, 3) for s in build_samples],
            "admit": [round(s, 3) for s in admit_samples],
            "lookup": [round(s, 3) for s in lookup_samples],
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"stand-in binary: {size / 1e6:.1f} MB; rebuilds byte-identical: {reproducible}")
        print(f"build  (median of {runs}): {build_median:.3f} s")
        print(f"admit  (median of {runs}): {admit_median:.3f} s")
        print(f"lookup (median of {lookups}, re-hash + registry read): {lookup_median:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
