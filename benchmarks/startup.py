"""What a `cto-harness` command pays before it does anything: the interpreter, and the imports.

    python3 benchmarks/startup.py [--rounds N] [--json]

Each round starts, in a rotating order, new interpreters (this checkout's `src/` first on
sys.path, bytecode as the checkout has it):
- `python -c pass`: the interpreter's own floor;
- `--version`: `python -m cto_harness --version`, the CLI tree (every command's parser);
- `run imports`: the modules a fake run loads (the CLI, the run pipeline, the fake engine).
Prints the medians, and the largest imports of a run (`-X importtime`, the smallest
cumulative time a module showed over the rounds) so a new heavy import shows by name.
Budget: the run's imports <= 150 ms on 2 cores (the CLI's whole overhead target is 250 ms).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from _bench import ROOT, SRC, arguments, emit, interleaved, median, ms

RUN_MODULES = ("cto_harness.cli.main", "cto_harness.core.run", "cto_harness.engines.fake.engine")
IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)")
BUDGET_S = 0.150


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def env() -> dict[str, str]:
    # As the program itself runs (cli/entry.py): no pydantic plugins.
    return {**os.environ, "PYTHONPATH": str(SRC), "PYDANTIC_DISABLE_PLUGINS": "__all__"}


def importtime(code: str) -> dict[str, tuple[int, int]]:
    """module -> (cumulative microseconds, nesting depth), from one `-X importtime` run."""
    err = subprocess.run(python("-X", "importtime", "-c", code), env=env(), cwd=ROOT,
                         capture_output=True, text=True, check=True).stderr
    found = {}
    for line in err.splitlines():
        if match := IMPORT_LINE.match(line):
            found[match[3]] = (int(match[1]), len(match[2]) // 2)
    return found


def stale_bytecode(src: Path) -> int:
    """Modules without bytecode as fresh as their source (each is compiled on every start when
    PYTHONDONTWRITEBYTECODE is set; `make install` writes it)."""
    from importlib.util import cache_from_source

    stale = 0
    for source in src.rglob("*.py"):
        cached = Path(cache_from_source(str(source)))
        if not cached.is_file() or cached.stat().st_mtime < source.stat().st_mtime:
            stale += 1
    return stale


def main() -> int:
    args = arguments(__doc__, rounds=15).parse_args()
    code = "import " + ", ".join(RUN_MODULES)

    def start(*argv: str) -> None:
        subprocess.run(python(*argv), env=env(), cwd=ROOT, stdin=subprocess.DEVNULL,
                       capture_output=True, check=True)

    samples = interleaved({
        "interpreter": lambda: start("-c", "pass"),
        "version": lambda: start("-m", "cto_harness", "--version"),
        "run_imports": lambda: start("-c", code),
    }, args.rounds)
    floor, version, imports = (median(samples[k]) for k in ("interpreter", "version",
                                                            "run_imports"))
    best: dict[str, tuple[int, int]] = {}
    for _ in range(min(args.rounds, 7)):
        for module, (cumulative, depth) in importtime(code).items():
            if module not in best or cumulative < best[module][0]:
                best[module] = (cumulative, depth)
    heavy = sorted(((us, m) for m, (us, depth) in best.items() if depth <= 1 and us >= 3000),
                   reverse=True)[:12]
    stale = stale_bytecode(SRC)
    lines = [
        f"rounds: {args.rounds} (interleaved), medians; bytecode missing or stale for {stale} "
        f"modules of src/{' (run make install)' if stale else ''}",
        f"python -c pass {ms(floor)} | cto-harness --version {ms(version)} (+{ms(version - floor)})"
        f" | a fake run's imports {ms(imports)} (+{ms(imports - floor)}"
        f"{'' if imports - floor <= BUDGET_S else ', OVER BUDGET'})",
        "largest imports of a run (smallest cumulative time over the rounds): "
        + ", ".join(f"{m} {us / 1000:.1f} ms" for us, m in heavy),
    ]
    emit("startup", {
        "rounds": args.rounds, "interpreter_ms": floor * 1000, "version_ms": version * 1000,
        "run_imports_ms": imports * 1000, "run_imports_over_interpreter_ms": (imports - floor)
        * 1000, "budget_met": imports - floor <= BUDGET_S, "stale_bytecode_modules": stale,
        "largest_imports_ms": {m: us / 1000 for us, m in heavy},
    }, lines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
