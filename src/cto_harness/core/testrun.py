"""The harness's own verification.

1. **The copy** is made from the snapshot, never from another walk of the workspace: the
   provider's result as the after-inventory holds it (the blobs `patch.diff` was made from),
   with every verification file taken from the before-inventory (the pristine fixture). It is
   planned in memory and then created in a folder the harness makes (`tree.materialize`): a link
   or file the provider put where the fixture has a directory or a verification file is simply
   not in the plan, so nothing is ever written through it. Special and unreadable entries, the
   workspace's own `.git` and the provider's `.case/` bookkeeping are never copied.
2. **The outcome** comes from the harness's own driver on a channel of its own
   (`core/testchannel.py`), checked against the test ids the harness collected from the
   pristine fixture; the runner's text output is kept in test.log and parsed only as a
   cross-check for people.
3. After the run, the laid-back verification files are hashed again: one the tests changed
   fails the run (`verification_files_changed`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cto_harness.contracts import VerificationResult
from cto_harness.core.fixtures import FixtureCase
from cto_harness.core.globs import matches_any
from cto_harness.core.testchannel import Channel, Expected, UnsupportedCommand, instrument, judge_run
from cto_harness.core.workspace import Entry, LinkMap, Snapshot
from cto_harness.errors import Blocked, BlockerCode
from cto_harness.inert import path_text
from cto_harness.sandbox.guard import DiskWatch
from cto_harness.sandbox.process import SANDBOX_TASK_LIMIT, run_process
from cto_harness.tree import (
    DIR,
    FILE,
    LINK,
    Planned,
    TreeChanged,
    materialize,
    read_file,
    tree_order,
)


def _parent(rel: bytes) -> bytes:
    return rel.rpartition(b"/")[0]


def _add_with_parents(rel: bytes, into: set[bytes]) -> None:
    """Add `rel` and its parent folders to `into`, stopping at the first one already there
    (linear in the tree's size, however deep it is)."""
    while rel and rel not in into:
        into.add(rel)
        rel = _parent(rel)


def _planned(entry: Entry) -> Planned:
    node = entry.node
    if entry.kind == LINK:
        return Planned(node.rel, LINK, target=node.target)
    return Planned(node.rel, FILE, executable=entry.git_mode == "100755", content=entry.sha1,
                   size=node.size)


def plan_copy(snapshot: Snapshot, globs: list[str], bookkeeping_dirs: Sequence[str] = ()
              ) -> tuple[list[Planned], list[str]]:
    """(what the verification copy holds, the verification paths laid back or removed).

    Verification files (`globs`, where `tests/**` also covers `tests` itself) come from the
    pristine inventory; everything else from the provider's result. A pristine file wins over
    whatever the provider put at its place, at one of its parent folders or below it. The
    provider's bookkeeping folders are left out, and so is a link that leads out of the tree
    (`LinkMap.leaves`) unless the fixture itself had it: the tests run only what the bundle
    holds."""
    before, after = snapshot.before_entries, snapshot.after_entries
    bookkeeping = frozenset(os.fsencode(d) for d in bookkeeping_dirs)

    def covered(rel: bytes) -> bool:
        return matches_any(path_text(rel), globs)

    pristine = {rel: e for rel, e in before.items() if e.stored and covered(rel)}
    needed: set[bytes] = set()  # folders the pristine files need
    for rel, entry in before.items():
        if entry.kind == DIR and covered(rel):
            _add_with_parents(rel, needed)
    for rel in pristine:
        _add_with_parents(_parent(rel), needed)
    files: dict[bytes, Entry] = {}
    restored: set[bytes] = {rel for rel in needed if after.get(rel) is None
                            or after[rel].kind != DIR}
    shadowed: set[bytes] = set()  # provider folders at or below a pristine file's place
    after_links, before_links = LinkMap(after), LinkMap(before)
    for rel in sorted(after, key=tree_order):
        entry = after[rel]
        parent = _parent(rel)
        if parent in shadowed or parent in pristine:
            if entry.kind == DIR:
                shadowed.add(rel)
            elif entry.stored:
                restored.add(rel)
            continue
        if entry.kind == DIR and rel in pristine:
            shadowed.add(rel)
            continue
        if not entry.stored or rel.split(b"/", 1)[0] in bookkeeping:
            continue
        if covered(rel) or rel in needed:
            if rel not in pristine or _differs(entry, pristine[rel]):
                restored.add(rel)
            continue
        if entry.kind == LINK and after_links.leaves(rel) and not (
                rel in before and not _differs(entry, before[rel])
                and before_links.leaves(rel)):
            # Never tested through: what it leads to is in no bundle (the fixture's own links
            # that lead out are kept as they were).
            continue
        files[rel] = entry
    for rel, entry in pristine.items():
        if rel not in after or _differs(after[rel], entry):
            restored.add(rel)
        files[rel] = entry
    # Folders: every parent of what is copied, and the fixture's folders that are still folders.
    dirs: set[bytes] = set(needed)
    for rel in files:
        _add_with_parents(_parent(rel), dirs)
    for rel, entry in after.items():
        if (entry.kind == DIR and rel not in shadowed and rel in before
                and before[rel].kind == DIR and rel.split(b"/", 1)[0] not in bookkeeping):
            _add_with_parents(rel, dirs)
    plan = [Planned(rel, DIR) for rel in dirs if rel not in files]
    plan += [_planned(e) for e in files.values()]
    return plan, sorted(path_text(r) for r in restored)


def _differs(a: Entry, b: Entry) -> bool:
    return (a.kind, a.sha1, a.git_mode) != (b.kind, b.sha1, b.git_mode)


def verification_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def run_verification(
    case: FixtureCase,
    snapshot: Snapshot,
    copy_dir: Path,
    log_path: Path,
    home: Path,
    *,
    expected: Expected,
    byte_limit: int,
    wrap: list[str] | None = None,
    bookkeeping_dirs: Sequence[str] = (),
) -> VerificationResult:
    spec = case.spec.verification
    plan, restored = plan_copy(snapshot, spec.files, bookkeeping_dirs)
    try:
        with snapshot.blobs() as content:
            made = materialize(copy_dir, plan, content, byte_limit=byte_limit)
    except TreeChanged as exc:
        raise Blocked(BlockerCode.WORKSPACE_UNSTABLE,
                      f"the snapshot store disagreed with its inventory: {exc}") from exc
    home.mkdir(parents=True, exist_ok=True)
    channel = Channel()
    stderr_path = log_path.with_suffix(".stderr.tmp")
    try:  # whatever stops this (an interrupt too), the channel's pipes and thread end with it
        try:
            argv = [*(wrap or []), *instrument(list(spec.command), spec.framework, "run",
                                               channel.out_fd, channel.token_fd)]
        except UnsupportedCommand as exc:
            raise Blocked(BlockerCode.TASK_CONTRACT_INVALID, str(exc)) from exc
        # The tests run the provider's code: what they write is bounded like the provider's
        # own run (one file at the limit; the copy and all they add at twice the limit).
        result = run_process(
            argv, cwd=copy_dir, env=verification_env(home), stdout_path=log_path,
            stderr_path=stderr_path, timeout_seconds=spec.timeout_seconds,
            pass_fds=channel.pass_fds, file_size_limit=byte_limit,
            watch=DiskWatch([copy_dir, home], 2 * byte_limit), task_limit=SANDBOX_TASK_LIMIT,
        )
    finally:
        records = channel.finish(timeout=10)
    judgement = judge_run(records, expected, exit_code=result.exit_code,
                          timed_out=result.timed_out, min_tests=case.spec.evidence.min_tests)
    if result.stopped_by_guard:
        judgement.fail("verification_stopped", f"the test run was stopped: "
                       f"{result.stopped_by_guard}")
    changed = _changed_verification_files(copy_dir, snapshot, plan, spec.files)
    if changed:
        judgement.fail("verification_files_changed",
                       f"the test run changed {len(changed)} laid-back verification files "
                       f"(e.g. {changed[0]})")
    # test.log holds both streams (unittest reports on stderr, pytest on stdout) and, last,
    # what the harness's channel said.
    with open(log_path, "ab") as log:
        log.write(stderr_path.read_bytes())
        log.write(
            f"\n[cto-harness] command: {spec.command}\n[cto-harness] exit code: "
            f"{result.exit_code}{' (timed out)' if result.timed_out else ''}\n"
            f"[cto-harness] result channel: {judgement.ran} tests reported "
            f"({judgement.passed} passed, {judgement.failed} failed, {judgement.skipped} "
            f"skipped) of {len(expected.ids)} expected; runner finished: "
            f"{judgement.finished}\n".encode())
        for reason in judgement.reasons:
            log.write(f"[cto-harness] {reason}\n".encode("utf-8", "backslashreplace"))
    stderr_path.unlink()
    output = log_path.read_text(encoding="utf-8", errors="replace")
    ran, passed, failed = parse_counts(spec.framework, output)
    return VerificationResult(
        status="failed" if judgement.failures else "passed",
        command=list(spec.command),
        framework=spec.framework,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        tests_ran=judgement.ran,
        tests_passed=judgement.passed,
        tests_failed=judgement.failed,
        tests_skipped=judgement.skipped,
        tests_expected=len(expected.ids),
        restored_files=restored,
        duration_ms=result.duration_ms,
        reason="; ".join(judgement.reasons) or None,
        failures=judgement.failures,
        result_channel="harness test driver (token-checked pipe)",
        runner_finished=judgement.finished,
        missing_tests=judgement.missing,
        unexpected_tests=judgement.unexpected,
        framework_tampered=judgement.tampered,
        tests=judgement.results,
        log_counts={"ran": ran, "passed": passed, "failed": failed},
        copy_made={"files": made.files, "links": made.links, "directories": made.directories,
              "bytes": made.bytes_written},
    )


def _changed_verification_files(copy_dir: Path, snapshot: Snapshot, plan: list[Planned],
                                globs: list[str]) -> list[str]:
    """Pristine files of the copy whose bytes differ after the test run (read without
    following links; a file replaced by anything else counts as changed)."""
    changed = []
    before = snapshot.before_entries
    for item in plan:
        if item.kind != FILE or item.rel not in before or not matches_any(path_text(item.rel),
                                                                          globs):
            continue
        data = read_file(copy_dir, item.rel, item.size + 1)
        if data is None or hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() \
                != before[item.rel].sha1:
            changed.append(path_text(item.rel))
    return changed


_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_UNITTEST_FAILED = re.compile(r"^FAILED \(([^)]*)\)", re.MULTILINE)
_UNITTEST_SKIPPED = re.compile(r"skipped=(\d+)")
_PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def _count(text: str) -> int:
    """A count the tested code may have printed: anything but a plain number of at most 12
    digits is 0, never an exception (`int` refuses letters and 4,300 digits or more)."""
    text = text.strip()
    return int(text) if text.isdigit() and text.isascii() and len(text) <= 12 else 0


def parse_counts(framework: str, output: str) -> tuple[int, int, int]:
    """(ran, passed, failed) as the runner's text says: a cross-check for people only. The tested
    code can print this text itself; the verdict never comes from it."""
    if framework == "unittest":
        ran_matches = _UNITTEST_RAN.findall(output)
        ran = _count(ran_matches[-1]) if ran_matches else 0
        failed = skipped = 0
        if failed_match := _UNITTEST_FAILED.findall(output):
            for part in failed_match[-1].split(","):
                key, _, value = part.strip().partition("=")
                if key in ("failures", "errors", "unexpected successes"):
                    failed += _count(value)
                elif key == "skipped":
                    skipped += _count(value)
        elif ok_lines := re.findall(r"^OK(?: \(([^)]*)\))?\s*$", output, re.MULTILINE):
            skipped = sum(_count(n) for n in _UNITTEST_SKIPPED.findall(ok_lines[-1] or ""))
        return ran, max(ran - failed - skipped, 0), failed
    counts: dict[str, int] = {}
    summary_lines = [line for line in output.splitlines() if _PYTEST_COUNTS.search(line)]
    if summary_lines:
        for number, word in _PYTEST_COUNTS.findall(summary_lines[-1]):
            key = "error" if word.startswith("error") else word
            counts[key] = counts.get(key, 0) + _count(number)
    passed = counts.get("passed", 0) + counts.get("xfailed", 0)
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("xpassed", 0)
    return passed + failed, passed, failed
