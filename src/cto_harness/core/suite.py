"""`cto-harness suite`: many cases times many repeats, in parallel processes, resumable.

Each run happens in a worker process of its own (`python -m cto_harness.core.suite --worker`), one run
at a time per worker, because the process runner's subreaper attributes every orphan that appears
during a launch to that launch. Workers live for the whole suite (imports are paid once per
worker, not once per run) and start in their own session, so a terminal's Ctrl-C reaches only this
coordinating process, which forwards SIGTERM to the busy workers: the run pipeline then seals an
`interrupted` bundle, as it does for any SIGTERM.

The coordinator never trusts a worker's word for a result. It chooses every bundle's path itself,
and after a worker says it finished (or died) it reads the result from the bundle, through
`verify_bundle`. `suite.json` maps (case, repeat) to that bundle and is rewritten atomically after
every finished run, so a suite stopped at any point resumes where it stopped: a repeat whose bundle
verifies (and was not interrupted) is not run again unless `--fresh`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import selectors
import signal
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

from cto_harness.clock import utc_now
from cto_harness.core.executor import Executor, Finished, Job, SuitePlan
from cto_harness.core.suite_plan import failed_conditions, keep_earlier, why
from cto_harness.engines import DEFAULT_ENGINE
from cto_harness.errors import (
    EXIT_BLOCKED,
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_PASS,
    BlockerCode,
    UsageError,
)
from cto_harness.fsutil import atomic_write_json, exclusive_lock, read_regular
from cto_harness.inert import inert
from cto_harness.progress import Progress

SUITE_SCHEMA = "cto-harness.suite/1"
SUITE_FILE = "suite.json"
SUITE_FILE_CAP = 64 << 20  # far above any suite's file; read before anything is checked
SUITE_CHANGED_FILES = 20  # changed files a run's row of suite.json names
LOCK_FILE = ".suite.lock"
# How long busy workers get to seal their interrupted bundles after a stop before SIGKILL.
STOP_GRACE_SECONDS = 60.0
_TICK = 0.2


@dataclass
class SuiteOutcome:
    suite_dir: Path
    data: dict[str, Any]
    exit_code: int
    interrupted: bool = False


# ---------------------------------------------------------------------------------------------
# aggregates


def pass_at_k(n: int, c: int, k: int) -> float | None:
    """The unbiased pass@k estimator 1 - C(n-c, k) / C(n, k); None when fewer than k runs."""
    if k <= 0 or n < k:
        return None
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def aggregate(runs: Sequence[dict[str, Any]], case_ids: Sequence[str], k: int) -> dict[str, Any]:
    """Per case: runs, passes, fails, blocked, errors, pass rate, pass@1, pass@k, median ms.
    Interrupted runs are counted apart: a run cut short says nothing about the provider."""
    per_case: dict[str, Any] = {}
    for case_id in case_ids:
        ended = [r for r in runs if r["case_id"] == case_id and r.get("verdict")]
        cut = [r for r in ended if _interrupted(r)]
        done = [r for r in ended if not _interrupted(r)]
        n = len(done)
        counts = {v: sum(1 for r in done if r["verdict"] == v)
                  for v in ("pass", "fail", "blocked", "error")}
        durations = [r["duration_ms"] for r in done if r.get("duration_ms") is not None]
        per_case[case_id] = {
            "runs": n,
            "passes": counts["pass"],
            "fails": counts["fail"],
            "blocked": counts["blocked"],
            "errors": counts["error"],
            "interrupted": len(cut),
            "pass_rate": counts["pass"] / n if n else None,
            "pass@1": pass_at_k(n, counts["pass"], 1),
            "k": k,
            f"pass@{k}": pass_at_k(n, counts["pass"], k),
            "median_duration_ms": statistics.median(durations) if durations else None,
        }
    return per_case


def _interrupted(record: dict[str, Any]) -> bool:
    return bool(record.get("interrupted")) or record.get("status") == "interrupted"


def suite_exit_code(runs: Sequence[dict[str, Any]], complete: bool) -> int:
    """3 if any run errored or the suite did not finish, else 1 if any failed, else 2 if any was
    blocked, else 0."""
    verdicts = {r.get("verdict") for r in runs}
    if not complete or "error" in verdicts or None in verdicts:
        return EXIT_ERROR
    if "fail" in verdicts:
        return EXIT_FAIL
    if "blocked" in verdicts:
        return EXIT_BLOCKED
    return EXIT_PASS


# ---------------------------------------------------------------------------------------------
# bundles


def read_bundle(run_dir: Path, public_key: Path | None = None) -> dict[str, Any] | None:
    """The run's record from its bundle, or None when the bundle is missing or does not verify
    with `public_key` (default: this machine's key)."""
    from cto_harness.errors import BundleInvalid
    from cto_harness.evidence.suite_signers import keyid_of
    from cto_harness.evidence.verify import verify_bundle
    from cto_harness.fsutil import sha256_file

    try:
        key = public_key or _local_key()
        report = verify_bundle(run_dir, key)
        signer = keyid_of(key)
        manifest = sha256_file(run_dir / "artifacts.sha256")
    except (BundleInvalid, OSError, ValueError):
        return None
    codes = [b.code for b in report.blockers]
    return {
        "run_id": report.run_id,
        "case_id": report.case_id,
        "engine": report.engine,
        "verdict": report.verdict,
        "interrupted": "interrupted" in codes,
        "blockers": codes,
        "failed_conditions": failed_conditions(report.pass_conditions),
        "challenge": report.freshness.challenge,
        "duration_ms": report.timing.duration_ms,
        # The first few: suite.json is an index (the bundle has them all); a provider's 9,000
        # long names made it 36 MB, past what the suite page reads.
        "changed_files": [c.path for c in report.changed_files[:SUITE_CHANGED_FILES]],
        "changed_files_count": len(report.changed_files),
        "tests_ran": report.verification.tests_ran,
        "tests_failed": report.verification.tests_failed,
        "isolation": report.isolation.tier,
        "signer": signer,
        "manifest_sha256": manifest,
    }


def _local_key() -> Path:
    from cto_harness.evidence.suite_signers import local_public_key
    from cto_harness.settings import Settings

    return local_public_key(Settings.from_env().keys_dir)


def _recorded_key(suite_dir: Path, run_dir: Path) -> Path | None:
    """The key a resumed run must verify with: the local one, or a node key the suite endorsed
    with the local key (`evidence/suite_signers.py`); None when there is no such key."""
    from cto_harness.errors import SignatureInvalid
    from cto_harness.evidence.suite_signers import SignerUnknown, resolve_key

    try:
        return resolve_key(run_dir, _local_key(), suite_dir)
    except (SignerUnknown, SignatureInvalid, OSError, ValueError):
        return None


def real_folders(root: Path, rel: Path) -> None:
    """Make each folder of `rel` below `root` (a suite's `runs/<case>`, `workers`) where missing,
    and refuse one that is anything but a real folder: a link planted there would have the suite
    write its bundles or logs wherever it leads."""
    folder = root
    for part in rel.parts:
        folder = folder / part
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        if not stat.S_ISDIR(_lstat_mode(folder)):
            raise UsageError(f"{folder} is not a folder of the suite (a link or a file): "
                             f"remove it, or use another --suite-dir")


def _bundle_path(suite_dir: Path, case_id: str, repeat: int) -> Path:
    folder = suite_dir / "runs" / case_id
    base = f"r{repeat:03d}"
    candidate = folder / base
    attempt = 1
    while os.path.lexists(candidate):
        attempt += 1
        candidate = folder / f"{base}.{attempt}"
    return candidate


@contextlib.contextmanager
def _suite_lock(suite_dir: Path) -> Iterator[None]:
    held = contextlib.ExitStack()
    try:
        held.enter_context(exclusive_lock(suite_dir / LOCK_FILE, wait=False))
    except BlockingIOError:
        raise UsageError(f"another suite is running in {suite_dir}") from None
    except OSError as exc:  # ELOOP: a link planted at the lock's name
        raise UsageError(f"{suite_dir / LOCK_FILE} cannot be the suite's lock "
                         f"({exc.strerror}): remove it, or use another --suite-dir") from None
    with held:
        yield


# ---------------------------------------------------------------------------------------------
# workers


class _Worker:
    """One worker process: a JSON line in per run, a JSON line out when the run returned."""

    def __init__(self, index: int, log: Path) -> None:
        import cto_harness

        package_parent = str(Path(cto_harness.__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
        self.index = index
        # Kept open for the worker's lifetime; a link planted at its name is never followed.
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(f"{log} cannot be a worker's log ({exc.strerror}): remove it, or "
                             f"use another --suite-dir") from None
        self.log = open(fd, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cto_harness.core.suite", "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
            start_new_session=True, close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self.job: Job | None = None
        self.buffer = b""
        self.alive = True

    def send(self, job: Job, engine: str, harness_root: Path, challenge: str | None = None
             ) -> None:
        self.job = job
        job.started = time.monotonic()
        line = json.dumps({"case_id": job.case_id, "engine": engine,
                           "harness_root": str(harness_root), "run_dir": str(job.run_dir),
                           "challenge": challenge})
        try:
            self.stdin.write(line.encode() + b"\n")
            self.stdin.flush()
        except (BrokenPipeError, OSError):
            self.alive = False

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signum)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()

    def finish(self, timeout: float) -> None:
        self.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.stdout.close()
        self.log.close()


def _worker_main() -> int:
    """The worker loop: read a job, run it, say so. Output of the run goes to stderr."""
    from cto_harness.core.run import execute_run
    from cto_harness.errors import Interrupted

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        for line in sys.stdin:
            job = json.loads(line)
            reply: dict[str, Any] = {"run_dir": job["run_dir"]}
            try:
                result = execute_run(job["case_id"], job["engine"],
                                     harness_root=Path(job["harness_root"]),
                                     run_dir=Path(job["run_dir"]),
                                     challenge=job.get("challenge"))
                reply["verdict"] = result.report.verdict
            except Interrupted:
                return 0
            except Exception as exc:  # reported; the coordinator reads the bundle, if any
                reply["error"] = f"{type(exc).__name__}: {exc}"
            protocol.write(json.dumps(reply) + "\n")
            protocol.flush()
    except Interrupted:
        return 0
    return 0


# ---------------------------------------------------------------------------------------------
# progress


class _SuiteProgress:
    """The suite's lines: a line per start (plain output) and per finish, a live line per
    running run (terminal)."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.out = Progress(stream)
        self.total = total
        self.done = 0

    def started(self, job: Job) -> None:
        if not self.out.tty:
            self.out.line(f"suite: start  {job.case_id} #{job.repeat}")

    def finished(self, job: Job) -> None:
        self.done += 1
        record = job.record or {}
        verdict = (record.get("verdict") or record.get("status") or "?").upper()
        reason = why(record)
        self.out.line(inert(f"suite: [{self.done}/{self.total}] {job.case_id} #{job.repeat} "
                            f"{verdict}{f' ({reason})' if reason else ''} "
                            f"{record.get('duration_ms') or 0} ms  "
                            f"{record.get('run_dir', '')}"))

    def live(self, running: Sequence[Job]) -> None:
        now = time.monotonic()
        self.out.live([*(f"  running {j.case_id} #{j.repeat}  {now - (j.started or now):5.1f}s"
                         for j in running), f"  {self.done}/{self.total} done"])

    def line(self, text: str) -> None:
        self.out.line(text)

    def end(self) -> None:
        self.out.end()


# ---------------------------------------------------------------------------------------------
# the suite


@dataclass
class _Stop:
    requested: bool = False
    signum: int | None = None
    workers: list[_Worker] = field(default_factory=list)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested:
            self.requested, self.signum = True, signum
        for worker in self.workers:
            if worker.job is not None:
                worker.signal(signal.SIGTERM)


def default_suite_dir(home: Path, engine: str) -> Path:
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    return home / "suites" / f"{stamp}-{engine}-{os.getpid()}"


def load_previous(suite_dir: Path) -> dict[str, Any]:
    """The suite file of an earlier invocation (unsigned: anyone with write access to the folder
    may have written it), read with a bound and no link followed. Only its rows that have the
    shape of a run (a case id, a repeat) are kept; every one of them is still checked against
    its bundle before it counts (`_verified_prior`)."""
    path = suite_dir / SUITE_FILE
    if not os.path.lexists(path):
        return {}
    try:
        data = json.loads(read_regular(path, SUITE_FILE_CAP))
    except (OSError, ValueError, RecursionError) as exc:
        raise UsageError(f"{path} does not parse: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SUITE_SCHEMA:
        raise UsageError(f"{path} is not a cto-harness suite file")
    rows = data.get("runs")
    data["runs"] = [r for r in rows if _run_shaped(r)] if isinstance(rows, list) else []
    cases = data.get("cases")
    data["cases"] = [c for c in cases if isinstance(c, str)] if isinstance(cases, list) else []
    if not isinstance(data.get("repeat"), int) or isinstance(data.get("repeat"), bool):
        data["repeat"] = 0
    return data


def _run_shaped(row: object) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("case_id"), str)
            and type(row.get("repeat")) is int and row["repeat"] >= 1)


def _verified_prior(suite_dir: Path, prior: dict[str, Any], engine: str,
                    seen: set[str]) -> tuple[str, dict[str, Any]] | None:
    """An earlier row's run folder and its record, when its bundle proves the row: the folder is
    where this suite puts that case's repeat (`runs/<case>/rNNN[.n]`, no link on the way; a path
    suite.json names is never followed elsewhere), its bundle verifies with a key the suite
    trusts, its report names the row's case and the suite's engine, and its run id was not
    counted already. None otherwise (the run is done again, or the row dropped)."""
    rel = prior.get("run_dir")
    case_id, repeat = prior["case_id"], prior["repeat"]
    if not isinstance(rel, str) or not re.fullmatch(
            rf"runs/{re.escape(case_id)}/r{repeat:03d}(\.[1-9][0-9]{{0,5}})?", rel):
        return None
    folder = suite_dir
    for part in rel.split("/"):
        folder = folder / part
        if not stat.S_ISDIR(_lstat_mode(folder)):
            return None
    key = _recorded_key(suite_dir, folder)
    record = read_bundle(folder, key) if key else None
    if (record is None or record["case_id"] != case_id or record["engine"] != engine
            or record["run_id"] in seen):
        return None
    seen.add(record["run_id"])
    return rel, record


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def run_suite(
    case_ids: Sequence[str],
    *,
    harness_root: Path,
    engine: str = DEFAULT_ENGINE,
    repeat: int = 1,
    jobs: int | None = 1,
    fresh: bool = False,
    retry: frozenset[str] = frozenset(),
    challenge: str | None = None,
    suite_dir: Path,
    progress: TextIO | None = sys.stderr,
    executor: Executor | None = None,
) -> SuiteOutcome:
    """Run every (case, repeat) not already done; returns the suite data and its exit code.
    `executor` decides where runs happen (default: local worker processes); `jobs` None lets
    it choose how many at once. `fresh` reruns every run; `retry` (verdicts) reruns the earlier
    runs that ended so; with a `challenge`, every run carries it (earlier runs that do not are run
    again)."""
    if repeat < 1 or (jobs is not None and jobs < 1):
        raise UsageError("--repeat and --jobs must be at least 1")
    executor = executor or LocalExecutor()
    suite_dir = suite_dir.absolute()
    suite_dir.mkdir(parents=True, exist_ok=True)
    with _suite_lock(suite_dir):
        return _run_locked(case_ids, harness_root, engine, repeat, jobs, fresh, retry, challenge,
                           suite_dir, progress, executor)


def _run_locked(
    case_ids: Sequence[str], harness_root: Path, engine: str, repeat: int, jobs: int | None,
    fresh: bool, retry: frozenset[str], challenge: str | None, suite_dir: Path,
    progress_stream: TextIO | None, executor: Executor,
) -> SuiteOutcome:
    # Every folder the suite writes into is a real one before anything runs.
    for case_id in case_ids:
        real_folders(suite_dir, Path("runs") / case_id)
    previous = load_previous(suite_dir)
    if previous and previous.get("engine") != engine:
        raise UsageError(f"{suite_dir} holds a suite of the {previous.get('engine')} engine, "
                         f"not {engine}: use another --suite-dir")
    old = {(r["case_id"], r["repeat"]): r for r in previous.get("runs", [])}
    all_jobs = [Job(case_id, r) for r in range(1, repeat + 1) for case_id in case_ids]
    todo: list[Job] = []
    seen: set[str] = set()  # run ids counted once, whatever rows name them
    for job in all_jobs:
        prior = old.get((job.case_id, job.repeat))
        proven = _verified_prior(suite_dir, prior, engine, seen) if prior and not fresh else None
        if prior is not None and proven is not None:
            rel, record = proven
            if keep_earlier(record, fresh=fresh, retry=retry, challenge=challenge):
                job.run_dir = suite_dir / rel
                job.record = {**_carried(prior), **record, "run_dir": rel,
                              "status": "done", "reused": True}
                continue
        todo.append(job)

    created = previous.get("created_at") or utc_now().isoformat()
    # A suite dir resumed with fewer cases or repeats keeps what it already holds.
    k = max(repeat, int(previous.get("repeat") or 0))
    cases = list(dict.fromkeys([*previous.get("cases", []), *case_ids]))
    meta = {"schema": SUITE_SCHEMA, "suite_dir": str(suite_dir), "engine": engine,
            "executor": executor.name, "harness_root": str(harness_root), "repeat": k,
            "jobs": jobs, "cases": cases, "created_at": created}
    # Runs of this suite dir that this invocation does not cover are kept, not forgotten, but
    # only as their bundles prove them: a row suite.json merely states counts nowhere.
    keys = {(j.case_id, j.repeat) for j in all_jobs}
    kept = []
    for key, prior in sorted(old.items()):
        if key not in keys and (proven := _verified_prior(suite_dir, prior, engine, seen)):
            kept.append({**_carried(prior), **proven[1], "case_id": key[0], "repeat": key[1],
                         "run_dir": proven[0], "status": "done", "reused": True})

    def snapshot(interrupted: bool, complete: bool) -> dict[str, Any]:
        runs = kept + [_row(job) for job in all_jobs]
        runs.sort(key=lambda r: (r["case_id"], r["repeat"]))
        mine = [_row(job) for job in all_jobs]
        done = [r for r in mine if r.get("verdict")]
        return {**meta, "updated_at": utc_now().isoformat(), "interrupted": interrupted,
                "complete": complete,
                "totals": {"runs": len(mine), "finished": len(done),
                           "passes": sum(1 for r in done if r["verdict"] == "pass"),
                           "exit_code": suite_exit_code(mine, complete)},
                "aggregates": aggregate(runs, cases, k),
                "signers": _signers(runs),
                "runs": runs}

    def save(interrupted: bool = False, complete: bool = False) -> dict[str, Any]:
        from cto_harness.evidence.suite_signers import endorse

        data = snapshot(interrupted, complete)
        atomic_write_json(suite_dir / SUITE_FILE, data)
        # Signed by this machine's key: which key signed which run (what `verify` trusts).
        endorse(suite_dir, data["runs"], _local_key().parent)
        return data

    save()
    progress = _SuiteProgress(progress_stream, len(todo))
    hooks = _Hooks(suite_dir, progress, save, engine, challenge)
    plan = SuitePlan(engine=engine, harness_root=harness_root, suite_dir=suite_dir, jobs=jobs,
                     case_ids=tuple(dict.fromkeys(j.case_id for j in todo)), challenge=challenge)
    stopped = executor.execute(todo, plan, hooks)
    progress.end()
    complete = not stopped and all(j.record and j.record.get("verdict") for j in all_jobs)
    data = save(interrupted=stopped, complete=complete)
    return SuiteOutcome(suite_dir, data, data["totals"]["exit_code"], interrupted=stopped)


# Fields an executor adds to a row (where it ran, lost attempts) that a resumed row keeps.
_CARRIED = ("node", "attempts", "lost_attempts")


def _carried(prior: dict[str, Any]) -> dict[str, Any]:
    return {k: prior[k] for k in _CARRIED if k in prior}


def _signers(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """keyid -> the suite's copy of that public key and how many counted runs it signed."""
    signers: dict[str, Any] = {}
    for run in runs:
        keyid = run.get("signer")
        if keyid and run.get("verdict"):
            entry = signers.setdefault(keyid, {"public_key": f"keys/{keyid}.pub", "runs": 0,
                                               "nodes": []})
            entry["runs"] += 1
            node = (run.get("node") or {}).get("node_id")
            if node and node not in entry["nodes"]:
                entry["nodes"].append(node)
    return signers


class _Hooks:
    """What the suite does when an executor places, starts or finishes a job."""

    def __init__(self, suite_dir: Path, progress: _SuiteProgress, save: Any, engine: str,
                 challenge: str | None) -> None:
        self.suite_dir = suite_dir
        self.progress = progress
        self.save = save
        self.engine = engine
        self.challenge = challenge

    def place(self, job: Job) -> Path:
        real_folders(self.suite_dir, Path("runs") / job.case_id)
        job.run_dir = _bundle_path(self.suite_dir, job.case_id, job.repeat)
        return job.run_dir

    def started(self, job: Job) -> None:
        self.progress.started(job)

    def live(self, running: Sequence[Job]) -> None:
        self.progress.live(running)

    def note(self, text: str) -> None:
        self.progress.line(text)

    def _not_this_job(self, job: Job, record: dict[str, Any]) -> str | None:
        """Why a verifying bundle is not the run of `job` (another case or engine, or without
        the suite's challenge), or None."""
        if (record["case_id"], record["engine"]) != (job.case_id, self.engine):
            return (f"the bundle returned for {job.case_id} is a run of "
                    f"{inert(str(record['case_id']))} with the {inert(str(record['engine']))} "
                    f"engine")
        if self.challenge is not None and record["challenge"] != self.challenge:
            return f"the bundle returned for {job.case_id} does not carry the suite's challenge"
        return None

    def finished(self, job: Job, done: Finished) -> None:
        """Count the run only from a bundle that verifies here (digests and signature)."""
        from cto_harness.evidence.suite_signers import store_public_key

        run_dir = done.run_dir
        record = read_bundle(run_dir, done.public_key) if run_dir is not None else None
        if record is not None and (wrong := self._not_this_job(job, record)):
            # A bundle that verifies but is another run (a node's stale or wrong answer).
            done = Finished(run_dir=None, blocker=BlockerCode.BUNDLE_REJECTED, message=wrong,
                            extra=done.extra)
            record = None
        if record is not None:
            status = "interrupted" if record["interrupted"] else "done"
            assert run_dir is not None
            # The suite keeps a copy of every signer's key (keys/<keyid>.pub) for `verify`.
            store_public_key(self.suite_dir, (done.public_key or _local_key()).read_bytes())
            job.record = {**record, "run_dir": run_dir.relative_to(self.suite_dir).as_posix(),
                          "status": status, "reused": False}
        elif done.blocker:
            code = done.blocker.value
            job.record = {"status": code, "verdict": "error", "blockers": [code],
                          "message": done.message, "run_dir": None, "reused": False}
        else:
            status = "interrupted" if done.stopping else "no_bundle"
            kept = run_dir if run_dir is not None and run_dir.exists() else None
            job.record = {"status": status, "verdict": None, "run_dir":
                          kept.relative_to(self.suite_dir).as_posix() if kept else None}
        job.record.update(done.extra)
        self.save()
        self.progress.finished(job)


def _row(job: Job) -> dict[str, Any]:
    row: dict[str, Any] = {"case_id": job.case_id, "repeat": job.repeat}
    if job.record is None:
        row.update(status="pending", verdict=None, run_dir=None)
    else:
        row.update(job.record)
    return row


class LocalExecutor:
    """Today's executor: persistent worker processes on this machine, one run at a time each."""

    name = "local"

    def execute(self, todo: list[Job], plan: SuitePlan, hooks: Any) -> bool:
        stop = _execute(todo, plan.jobs or os.cpu_count() or 1, plan.engine, plan.harness_root,
                        plan.suite_dir, hooks, plan.challenge)
        return stop.requested


def _execute(todo: list[Job], jobs: int, engine: str, harness_root: Path, suite_dir: Path,
             hooks: Any, challenge: str | None = None) -> _Stop:
    stop = _Stop()
    handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    selector = selectors.DefaultSelector()
    queue = list(todo)
    try:
        if queue:
            real_folders(suite_dir, Path("workers"))
        for index in range(min(jobs, len(queue))):
            worker = _Worker(index, suite_dir / "workers" / f"worker-{index}.log")
            stop.workers.append(worker)
            selector.register(worker.stdout, selectors.EVENT_READ, worker)

        def dispatch(worker: _Worker) -> None:
            if stop.requested or not queue or not worker.alive:
                worker.job = None
                worker.close()
                return
            job = queue.pop(0)
            hooks.place(job)
            worker.send(job, engine, harness_root, challenge)
            hooks.started(job)

        def settle(worker: _Worker) -> None:
            job = worker.job
            if job is None:
                return
            worker.job = None
            hooks.finished(job, Finished(run_dir=job.run_dir, stopping=stop.requested))

        for worker in stop.workers:
            dispatch(worker)
        deadline: float | None = None
        while any(w.alive for w in stop.workers):
            if stop.requested and deadline is None:
                deadline = time.monotonic() + STOP_GRACE_SECONDS
                for worker in stop.workers:
                    if worker.job is None:
                        worker.close()
            if deadline is not None and time.monotonic() > deadline:
                for worker in stop.workers:
                    worker.signal(signal.SIGKILL)
            for key, _mask in selector.select(timeout=_TICK):
                worker = key.data
                chunk = os.read(worker.stdout.fileno(), 65536)
                if not chunk:  # the worker is gone (finished, stopped or crashed)
                    selector.unregister(worker.stdout)
                    worker.alive = False
                    worker.proc.wait()
                    settle(worker)
                    continue
                worker.buffer += chunk
                while b"\n" in worker.buffer:
                    _line, worker.buffer = worker.buffer.split(b"\n", 1)
                    settle(worker)
                    dispatch(worker)
            hooks.live([w.job for w in stop.workers if w.job is not None])
    finally:
        for worker in stop.workers:
            worker.finish(timeout=STOP_GRACE_SECONDS)
        selector.close()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    # Jobs never dispatched stay pending; a later invocation on the same suite dir runs them.
    return stop


# ---------------------------------------------------------------------------------------------
# presentation


def summary_table(data: dict[str, Any]) -> str:
    """The runs, one line each, then one line per case with its aggregates."""
    header = ("case", "repeat", "verdict", "why", "duration", "changed", "bundle")
    rows = [header]
    suite_dir = Path(data["suite_dir"])
    for run in data["runs"]:
        verdict = run.get("verdict") or run.get("status", "pending")
        if run.get("status") == "interrupted":
            verdict = "interrupted"
        duration = f"{run['duration_ms']} ms" if run.get("duration_ms") is not None else "-"
        changed = ", ".join(run.get("changed_files") or []) or "-"
        if (more := (run.get("changed_files_count") or 0) - len(run.get("changed_files") or [])) > 0:
            changed += f" (+{more} more)"
        bundle = str(suite_dir / run["run_dir"]) if run.get("run_dir") else "-"
        rows.append((run["case_id"], str(run["repeat"]), verdict, why(run) or "-", duration,
                     changed, bundle))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1]
             for r in rows]
    lines.append("")
    k = data["repeat"]
    for case_id, agg in data["aggregates"].items():
        rate = "-" if agg["pass_rate"] is None else f"{agg['pass_rate']:.0%}"
        pk = agg.get(f"pass@{k}")
        median = agg["median_duration_ms"]
        cut = agg.get("interrupted") or 0
        lines.append(
            f"{case_id}: {agg['passes']}/{agg['runs']} passed ({rate}), "
            f"pass@1 {_fmt(agg['pass@1'])}, pass@{k} {_fmt(pk)}, "
            f"median {'-' if median is None else f'{median:.0f} ms'}"
            f"{f', {cut} interrupted (not counted)' if cut else ''}")
    totals = data["totals"]
    lines.append(f"suite: {totals['finished']}/{totals['runs']} runs finished, "
                 f"{totals['passes']} passed; suite.json: {suite_dir / SUITE_FILE}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(_worker_main())
    print("usage: python -m cto_harness.core.suite --worker (started by `cto-harness suite`)",
          file=sys.stderr)
    sys.exit(64)
