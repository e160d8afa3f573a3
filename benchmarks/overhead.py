"""Harness overhead: a full fake-lane run of each fixture vs the bare verification command.

    python3 benchmarks/overhead.py [--rounds N] [--json] [CASE ...]

For every fixture case, one round runs, in a rotating order:
- bare: the case's verification command, by hand, in a prepared copy (the fixture with the fake
  solution laid over it) with the same environment the harness gives it: the physical floor;
- execute_run: `cto_harness.core.run.execute_run(case, "fake")`, the whole pipeline in this process
  (gates, copy, git, snapshots, fake agent, diff, verification, bundle, digests);
- cli: `harness/evals/run-case.sh <case>` as a user types it (a new interpreter each time).
Prints the medians, the ratio to bare and the absolute overhead in ms.
Target: overhead <= max(250 ms, 0.5 x bare), i.e. at most 250 ms or 1.5x bare, whichever is larger.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import ROOT, arguments, emit, interleaved, median, ms, solved_copy

from cto_harness.core.fixtures import case_directory, list_case_ids, load_case
from cto_harness.core.run import execute_run
from cto_harness.core.testrun import verification_env

HARNESS = ROOT / "harness"


def target_ok(run: float, bare: float) -> bool:
    return run - bare <= max(0.250, 0.5 * bare)


def main() -> int:
    parser = arguments(__doc__, rounds=9)
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    cases = args.cases or list_case_ids(HARNESS)
    figures: dict[str, dict[str, float | bool]] = {}
    lines = [f"rounds: {args.rounds} (interleaved), medians"]
    with tempfile.TemporaryDirectory(prefix="cto-bench-overhead-") as tmp:
        base = Path(tmp)
        env = {**os.environ, "CTO_HARNESS_HOME": str(base / "home"),
               "CTO_HARNESS_RUNS_DIR": str(base / "runs")}
        os.environ.update({k: env[k] for k in ("CTO_HARNESS_HOME", "CTO_HARNESS_RUNS_DIR")})
        for case_id in cases:
            case = load_case(case_directory(HARNESS, case_id))
            prepared = solved_copy(case, base / f"prepared-{case_id}")
            home = base / f"home-{case_id}"
            home.mkdir()
            venv = verification_env(home)
            command = list(case.spec.verification.command)
            verdicts: list[str] = []

            def bare(command: list[str] = command, prepared: Path = prepared,
                     venv: dict[str, str] = venv) -> None:
                subprocess.run(command, cwd=prepared, env=venv, stdin=subprocess.DEVNULL,
                               capture_output=True, check=True)

            def run(case_id: str = case_id, verdicts: list[str] = verdicts) -> None:
                verdicts.append(execute_run(case_id, "fake", harness_root=HARNESS).report.verdict)

            def cli(case_id: str = case_id) -> None:
                subprocess.run([str(HARNESS / "evals" / "run-case.sh"), case_id], env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, check=True)

            samples = interleaved({"bare": bare, "execute_run": run, "cli": cli}, args.rounds)
            assert set(verdicts) == {"pass"}, verdicts
            b, r, c = (median(samples[k]) for k in ("bare", "execute_run", "cli"))
            figures[case_id] = {
                "bare_ms": b * 1000, "execute_run_ms": r * 1000, "cli_ms": c * 1000,
                "execute_run_ratio": r / b, "cli_ratio": c / b,
                "execute_run_overhead_ms": (r - b) * 1000, "cli_overhead_ms": (c - b) * 1000,
                "execute_run_target_met": target_ok(r, b), "cli_target_met": target_ok(c, b),
            }
            lines.append(
                f"{case_id}: bare {ms(b)} | execute_run {ms(r)} ({r / b:.2f}x, +{ms(r - b)}"
                f"{'' if target_ok(r, b) else ', OVER TARGET'}) | cli run-case.sh {ms(c)} "
                f"({c / b:.2f}x, +{ms(c - b)}{'' if target_ok(c, b) else ', OVER TARGET'})")
    emit("overhead", {"cases": figures, "rounds": args.rounds}, lines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
