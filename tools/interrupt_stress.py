#!/usr/bin/env python3
"""Interrupt many runs (of the fake lane by default) at random points, in one long-lived process,
and say what each became.
`python3 tools/interrupt_stress.py [--runs N] [--max-delay S] [--case ID] [--engine E]`

This is what a Ray worker lives through: task after task in the same process, each cancelled
(`ray.cancel`, which calls `_thread.interrupt_main()` from another thread) at whatever point it
has reached. Every run must end in one of these, and nothing may pile up across runs:

* `interrupted`: a sealed bundle that verifies, blocker `interrupted`;
* `sealed, then handed back`: the signal came while the bundle was being sealed; the bundle is
  whole and the signal reached the caller afterwards;
* `before the run folder`: the signal came before the run folder existed; nothing is written;
* `finished first`: the run was over before the signal came (a `pass`).

Anything else (an `error` bundle, another blocker, a bundle that does not verify, a descriptor
or a sandbox uid kept after the run, a thread or a child process still running at the end) is
listed and the exit status is 1. The runs go to a temporary folder, removed at the end, and so
does the home unless `$CTO_HARNESS_HOME` names one (the Case and pi lanes need the home that
holds their admissions).
"""

from __future__ import annotations

import _thread
import argparse
import collections
import gc
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cto_harness.errors import BlockerCode, Failed  # noqa: E402


def _open_fds() -> dict[str, str]:
    """This process's open descriptors, by number, with what each is open on (after a garbage
    collection: what only a reference cycle still holds is not kept)."""
    gc.collect()
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own descriptor, closed meanwhile
    return found


def _children() -> list[str]:
    """This process's live child processes (pid and name)."""
    me, found = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat_line = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name, rest = stat_line[stat_line.index("(") + 1:stat_line.rindex(")")], \
            stat_line[stat_line.rindex(")") + 2:].split()
        if rest[1] == me and rest[0] != "Z":
            found.append(f"{pid} {name}")
    return found


def _outcome(run_dir: Path, escaped: bool, public_key: Path) -> str:
    from cto_harness.evidence.verify import verify_bundle

    if not run_dir.exists():
        return "before the run folder" if escaped else "no run folder, no signal seen"
    try:
        report = verify_bundle(run_dir, public_key)
    except Failed as exc:
        return f"bundle does not verify: {exc}"
    codes = [b.code for b in report.blockers]
    if codes == [BlockerCode.INTERRUPTED]:
        return "interrupted"
    if report.verdict == "pass" and not codes:
        return "sealed, then handed back" if escaped else "finished first"
    said = "; ".join(b.message for b in report.blockers)
    return f"{report.verdict} {','.join(codes)}: {said}".strip(" :")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="how many runs (default 200)")
    parser.add_argument("--max-delay", type=float, default=0.4,
                        help="the signal comes 0.01 s to this many seconds into a run "
                             "(default 0.4: about a fake run's length here)")
    parser.add_argument("--case", default="r1-string-slugify")
    parser.add_argument("--engine", default="fake",
                        help="default fake; `case` or `pi` need their usual settings in the "
                             "environment (an admitted binary, a model) and a harness root "
                             "whose policy admits them")
    parser.add_argument("--harness-root", type=Path, default=REPO / "harness")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="cto-interrupt-stress-"))
    # A home of its own, unless the engine needs the caller's (its admissions are there).
    os.environ.setdefault("CTO_HARNESS_HOME", str(scratch / "home"))
    os.environ["CTO_HARNESS_RUNS_DIR"] = str(scratch / "runs")
    from cto_harness.core.run import execute_run
    from cto_harness.settings import Settings

    settings = Settings.from_env()
    public_key = settings.keys_dir / "evidence-ed25519.pub"
    tally: collections.Counter[str] = collections.Counter()
    wrong: list[str] = []
    fds_before: dict[str, str] = {}
    try:
        for number in range(args.runs):
            delay = random.uniform(0.01, args.max_delay)
            fired = threading.Event()

            def cancel(wait: float = delay, done: threading.Event = fired) -> None:
                time.sleep(wait)  # a random point of the run is the point of this tool
                _thread.interrupt_main()
                done.set()

            run_dir = scratch / "runs" / f"r{number:04d}"
            escaped = False  # the signal came out of execute_run, as KeyboardInterrupt
            canceller = threading.Thread(target=cancel, daemon=True)
            try:
                canceller.start()
                execute_run(args.case, args.engine, harness_root=args.harness_root,
                            settings=settings, run_dir=run_dir)
            except KeyboardInterrupt:
                escaped = True
            absorbed = False  # a signal that comes after the run is raised (and ends) here
            while not absorbed:
                try:
                    fired.wait()
                    canceller.join()
                    time.sleep(0)
                    absorbed = True
                except KeyboardInterrupt:
                    pass
            outcome = _outcome(run_dir, escaped, public_key)
            tally[outcome] += 1
            if outcome not in {"interrupted", "sealed, then handed back",
                               "before the run folder", "finished first"}:
                wrong.append(f"run {number} (signal at {delay * 1000:.0f} ms): {outcome}")
            shutil.rmtree(run_dir, ignore_errors=True)
            if number == 0:
                fds_before = _open_fds()  # after the first run: its one-time set-up is done
            if (number + 1) % 50 == 0:
                print(f"{number + 1}/{args.runs} runs", file=sys.stderr, flush=True)
        kept = sorted(set(_open_fds().items()) - set(fds_before.items()))
        threads = [t.name for t in threading.enumerate()
                   if t is not threading.main_thread() and t.is_alive()]
        children = _children()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for outcome, count in tally.most_common():
        print(f"{count:5d}  {outcome}")
    print(f"descriptors kept across runs: {len(kept)}")
    for fd, target in kept:
        print(f"KEPT descriptor {fd}: {target}")
    print(f"threads still running: {len(threads)}; child processes: {len(children)}")
    for what in [*threads, *children]:
        print(f"LEFT {what}")
    for line in wrong:
        print(f"WRONG {line}")
    return 1 if wrong or kept or threads or children else 0


if __name__ == "__main__":
    sys.exit(main())
