"""Test results the code under test cannot write: the harness side of `testdriver.py`.

The verification command `<python> [options] -m unittest|pytest ARGS` is run as
`<python> [options] -c <driver> MODE OUT_FD TOKEN_FD FRAMEWORK ARGS`: the same interpreter,
options and runner arguments, with the harness's own result class (unittest) or plugin (pytest)
reporting each test on a pipe inherited by the process and never named to the tested code. Each
record carries a per-run random token the driver read from a second pipe before any test module
was imported. The verdict comes from these records only:

* the ids the harness collected itself, in a separate process, from the PRISTINE fixture
  (`Collection`), must each be reported exactly as often as they were collected;
* the runner must reach its own end (the `end` record), and nothing may follow it;
* the exit status must agree with the outcomes; no record may lack the token.

The runner's text output (test.log) is still parsed, as a cross-check for people only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cto_harness.errors import Blocked, BlockerCode
from cto_harness.inert import inert

_CHANNEL_CAP = 32 << 20
_LIST_CAP = 50
_RESULTS_CAP = 5000
PASSING = frozenset({"passed", "expected_failure"})
FAILING = frozenset({"failed", "error", "unexpected_success", "no_outcome"})
_PYTHON = re.compile(r"^(python|pypy)[0-9.]*$")
_OPTIONS_WITH_VALUE = frozenset({"-W", "-X"})


class UnsupportedCommand(ValueError):
    """A verification command the harness cannot run through its own driver."""


@lru_cache(maxsize=1)
def driver_source() -> str:
    return Path(__file__).with_name("testdriver.py").read_text(encoding="utf-8")


def instrument(command: list[str], framework: str, mode: str, out_fd: int,
               token_fd: int) -> list[str]:
    """The command with `-m <framework>` replaced by the harness's driver."""
    if not command or not _PYTHON.match(os.path.basename(command[0])):
        raise UnsupportedCommand(
            f"the verification command must start with a Python interpreter, got "
            f"{command[:1]}")
    options: list[str] = []
    index = 1
    while index < len(command):
        arg = command[index]
        if arg == "-m":
            module = command[index + 1] if index + 1 < len(command) else ""
            if module != framework:
                raise UnsupportedCommand(
                    f"the verification command runs -m {module!r}, its framework is "
                    f"{framework!r}")
            rest = command[index + 2:]
            return [command[0], *options, "-c", driver_source(), mode, str(out_fd),
                    str(token_fd), framework, *rest]
        if arg in _OPTIONS_WITH_VALUE and index + 1 < len(command):
            options += [arg, command[index + 1]]
            index += 2
            continue
        if re.fullmatch(r"-[bBdEIOPqsSuv]+|-[WX].+", arg):
            options.append(arg)
            index += 1
            continue
        break
    raise UnsupportedCommand(
        "the verification command must be `<python> [options] -m unittest|pytest ...` "
        "so that the harness can read the results from its own channel")


class _Drain:
    """What the draining thread holds: the pipe's read end and the bytes read. Not the channel:
    a channel dropped half-made (an interrupt while it is built) then closes its write end, and
    the thread ends at EOF instead of waiting forever."""

    def __init__(self, reader: io.FileIO) -> None:
        self.reader = reader
        self.data = bytearray()
        self.truncated = False

    def run(self) -> None:
        with self.reader:
            while chunk := self.reader.read(1 << 16):
                room = _CHANNEL_CAP - len(self.data)
                if len(chunk) > room:
                    self.truncated = True
                self.data += chunk[:max(room, 0)]


class Channel:
    """One result pipe (the driver writes, a thread here drains it) and one token pipe.

    Every descriptor is a file object's from the moment it exists, so whatever stops the run
    (an interrupt lands anywhere), each is closed once, when its object goes."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        read_fd, write_fd = os.pipe()
        self._drain = _Drain(io.FileIO(read_fd, "rb"))
        self._out = io.FileIO(write_fd, "wb")
        token_read, token_write = os.pipe()
        self._token = io.FileIO(token_read, "rb")
        with io.FileIO(token_write, "wb") as writer:
            writer.write(self.token.encode())
        self._thread = threading.Thread(target=self._drain.run, daemon=True)
        self._thread.start()

    @property
    def out_fd(self) -> int:
        return -1 if self._out.closed else self._out.fileno()

    @property
    def token_fd(self) -> int:
        return -1 if self._token.closed else self._token.fileno()

    @property
    def pass_fds(self) -> tuple[int, int]:
        return (self.out_fd, self.token_fd)

    def close_child_ends(self) -> None:
        """Once the child has its own copies: our write end must go for EOF to come."""
        self._out.close()
        self._token.close()

    def finish(self, timeout: float = 10.0) -> Records:
        self.close_child_ends()
        self._thread.join(timeout)
        return parse_records(bytes(self._drain.data), self.token,
                             truncated=self._drain.truncated or self._thread.is_alive())


@dataclass
class Records:
    """What came through the channel, checked line by line."""

    started: bool = False
    end: dict[str, Any] | None = None
    tests: list[tuple[str, str]] = field(default_factory=list)  # (id, outcome)
    details: dict[str, str] = field(default_factory=dict)  # id -> the failure's text
    collected: list[tuple[str, bool]] = field(default_factory=list)  # (id, may skip)
    collect_errors: list[str] = field(default_factory=list)
    invalid: int = 0  # lines without the token, or not JSON: written by someone else
    after_end: int = 0
    truncated: bool = False


def parse_records(data: bytes, token: str, *, truncated: bool = False) -> Records:
    out = Records(truncated=truncated)
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            out.invalid += 1
            continue
        if not isinstance(row, dict) or row.get("token") != token:
            out.invalid += 1
            continue
        if out.end is not None:
            out.after_end += 1
            continue
        kind = row.get("type")
        ident = str(row.get("id", ""))
        if kind == "start":
            out.started = True
        elif kind == "test":
            out.tests.append((ident, str(row.get("outcome"))))
            if row.get("detail"):
                out.details.setdefault(ident, str(row["detail"])[-4000:])
        elif kind == "collected":
            out.collected.append((ident, bool(row.get("may_skip"))))
        elif kind == "collect_error":
            out.collect_errors.append(ident)
        elif kind == "end":
            out.end = row
        else:
            out.invalid += 1
    return out


@dataclass(frozen=True)
class Expected:
    """The tests the pristine verification files define, as the harness collected them."""

    ids: tuple[str, ...]
    may_skip: frozenset[str]  # marked skip, skipif, expectedFailure or xfail: may not pass

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.ids)


@dataclass
class Judgement:
    failures: list[str] = field(default_factory=list)  # named failed conditions
    reasons: list[str] = field(default_factory=list)  # the same, for people
    ran: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    finished: bool = False
    tampered: list[str] = field(default_factory=list)
    # Every test as reported (and each expected one that was not), for people and the viewer.
    results: list[dict[str, str]] = field(default_factory=list)

    def fail(self, code: str, reason: str) -> None:
        if code not in self.failures:
            self.failures.append(code)
        self.reasons.append(reason)


def _shown(ids: list[str]) -> list[str]:
    return [inert(i)[:300] for i in ids[:_LIST_CAP]]


def judge_run(records: Records, expected: Expected, *, exit_code: int | None, timed_out: bool,
              min_tests: int) -> Judgement:
    """The verification verdict, from the channel and the harness's own collection only."""
    j = Judgement()
    if timed_out:
        j.fail("timed_out", "the test run hit its time limit")
    if records.invalid:
        j.fail("channel_record_invalid",
               f"{records.invalid} records on the result channel lacked this run's token "
               "(written by something other than the harness's driver)")
    if records.truncated:
        j.fail("channel_record_invalid", "the result channel overflowed or never closed")
    if not records.started:
        j.fail("runner_did_not_start", "the harness's test driver never reported its start")
    j.finished = records.end is not None
    if not j.finished:
        j.fail("runner_did_not_finish",
               "the test runner never reached its own end (the process exited or was stopped "
               "early); any summary it printed is ignored")
    if records.after_end:
        j.fail("records_after_end", f"{records.after_end} records arrived after the end")
    raw_tampered = (records.end or {}).get("tampered") or []
    tampered = raw_tampered if isinstance(raw_tampered, list) else ["(malformed)"]
    j.tampered = [inert(str(t)) for t in tampered][:_LIST_CAP]
    if tampered:
        j.fail("framework_tampered",
               f"the test framework's own functions were replaced during the run: "
               f"{', '.join(j.tampered[:5])}")

    reported: Counter[str] = Counter(ident for ident, _ in records.tests)
    want = expected.counts
    missing = sorted((want - reported).elements())
    unexpected = sorted((reported - want).elements())
    j.missing, j.unexpected = _shown(missing), _shown(unexpected)
    if missing:
        j.fail("expected_tests_missing",
               f"{len(missing)} of the {sum(want.values())} tests the pristine verification "
               f"files define were not reported (e.g. {j.missing[0]})")
    if unexpected:
        j.fail("unexpected_tests",
               f"{len(unexpected)} results for tests the pristine files do not define "
               f"(e.g. {j.unexpected[0]})")
    for ident, outcome in records.tests:
        j.ran += 1
        if outcome == "expected_failure" and ident not in expected.may_skip:
            # A failure counts as expected only where the pristine file says so: the tested
            # code can mark every test (`TestCase.__unittest_expecting_failure__`, `pytest.xfail`).
            j.failed += 1
            j.fail("failure_not_expected", f"{inert(ident)[:200]} failed and was reported as an "
                   "expected failure; the pristine file does not mark it so")
        elif outcome in PASSING:
            j.passed += 1
        elif outcome == "skipped":
            j.skipped += 1
            if ident not in expected.may_skip:
                j.fail("tests_skipped", f"{inert(ident)[:200]} was skipped; the pristine "
                       "file does not mark it as skippable")
        else:
            j.failed += 1
    if j.failed:
        j.fail("tests_failed", f"{j.failed} tests failed")
    j.results = [{"id": inert(ident)[:500], "outcome": outcome,
                  **({"detail": inert(records.details[ident], multiline=True)}
                     if ident in records.details else {})}
                 for ident, outcome in records.tests[:_RESULTS_CAP]]
    j.results += [{"id": inert(ident)[:500], "outcome": "not_reported"}
                  for ident in missing[:_RESULTS_CAP]]
    if j.ran == 0:
        j.fail("no_tests_ran", "no tests ran")
    elif j.ran - j.skipped < min_tests:
        j.fail("too_few_tests",
               f"only {j.ran - j.skipped} tests ran, the case expects at least {min_tests}")
    clean = j.failed == 0 and j.finished
    if not timed_out and exit_code is not None and (exit_code == 0) != clean:
        j.fail("exit_status_inconsistent",
               f"exit code {exit_code} disagrees with the reported outcomes")
    end = records.end or {}
    if j.finished and "ran" in end and end.get("ran") != sum(
            1 for ident, _ in records.tests if not _fixture_holder(ident)):
        j.fail("end_counts_inconsistent",
               f"the runner counted {end.get('ran')} tests but reported "
               f"{len(records.tests)}")
    return j


def _fixture_holder(ident: str) -> bool:
    """unittest reports a failed setUpClass/setUpModule as a pseudo-test it does not count."""
    return ident.startswith(("setUpClass (", "tearDownClass (", "setUpModule (",
                             "tearDownModule ("))


# --- the harness's own collection of the pristine tests ---------------------------------------

_EXPECTED: dict[tuple[Any, ...], Expected] = {}


@dataclass
class Collection:
    """Expected test ids, collected from the pristine fixture by a process of the harness's own
    (started early, so it overlaps the provider's run), remembered per fixture digest."""

    key: tuple[Any, ...]
    done: Expected | None = None
    proc: subprocess.Popen[bytes] | None = None
    channel: Channel | None = None
    log: Path | None = None
    timeout: float = 120.0
    started: float = 0.0

    @classmethod
    def start(cls, *, command: list[str], framework: str, repo: Path, env: dict[str, str],
              log: Path, fixture_digest: str, timeout: float,
              stop_with: contextlib.ExitStack) -> Collection:
        """Start collecting; `stop_with` (the run's) stops it at the latest when it closes."""
        key = (fixture_digest, tuple(command), framework, env.get("PATH", ""))
        if key in _EXPECTED:
            return cls(key=key, done=_EXPECTED[key])
        collection = cls(key=key, log=log, timeout=timeout, started=time.monotonic())
        # Registered before its pipes and its process exist: whatever interrupts the run from
        # here on (a signal lands anywhere), neither outlives it.
        stop_with.callback(collection.cancel)
        try:
            collection.channel = channel = Channel()
            argv = instrument(command, framework, "collect", channel.out_fd, channel.token_fd)
        except UnsupportedCommand as exc:
            raise Blocked(BlockerCode.TASK_CONTRACT_INVALID, str(exc)) from exc
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            collection.proc = subprocess.Popen(
                argv, cwd=repo, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, pass_fds=channel.pass_fds, start_new_session=True)
        channel.close_child_ends()
        return collection

    def result(self) -> Expected:
        if self.done is not None:
            return self.done
        assert self.proc is not None and self.channel is not None and self.log is not None
        try:
            code = self.proc.wait(max(0.0, self.timeout - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.cancel()
            raise Blocked(BlockerCode.TEST_COLLECTION_FAILED,
                          f"collecting the pristine tests took longer than {self.timeout:g}s"
                          ) from None
        records = self.channel.finish()
        problems = []
        if records.invalid or not records.started or records.end is None:
            problems.append("the collection did not finish")
        if records.collect_errors:
            problems.append(f"modules that did not import: {', '.join(records.collect_errors[:5])}")
        if code != 0:
            problems.append(f"exit code {code}")
        if not records.collected:
            problems.append("no tests collected")
        if problems:
            tail = self.log.read_bytes()[-1500:].decode("utf-8", "replace")
            raise Blocked(BlockerCode.TEST_COLLECTION_FAILED,
                          f"the harness could not collect the tests of the pristine fixture "
                          f"({'; '.join(problems)}): {inert(tail)}")
        self.done = Expected(ids=tuple(i for i, _ in records.collected),
                             may_skip=frozenset(i for i, skip in records.collected if skip))
        _EXPECTED[self.key] = self.done
        return self.done

    def cancel(self) -> None:
        """Stop a collection whose result is no longer needed (the run stopped early)."""
        if self.proc is not None and self.proc.returncode is None:
            # Not reaped yet, so its process group id cannot have been reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if self.channel is not None:
            self.channel.finish(timeout=1)
