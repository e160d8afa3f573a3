"""The harness's own verification: a separate copy of the result with the fixture's verification
files laid back over it (so a provider cannot pass by editing the tests), the case's command run in
it, and the test counts read from the output. A suite that ran no test is a failure."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from cto_harness.contracts import VerificationResult
from cto_harness.core.fixtures import FixtureCase
from cto_harness.core.globs import matches_any
from cto_harness.sandbox.process import run_process

# Never copied into the verification copy: the workspace's own history.
_IGNORED_IN_COPY = frozenset({".git"})


def _relative_files(root: Path, ignored: frozenset[str] = _IGNORED_IN_COPY) -> set[str]:
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) == root and d in ignored)]
        for name in filenames:
            found.add((Path(dirpath) / name).relative_to(root).as_posix())
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():
                found.add((Path(dirpath) / name).relative_to(root).as_posix())
    return found


def prepare_copy(workspace: Path, pristine: Path, destination: Path, globs: list[str],
                 *, bookkeeping_dirs: Sequence[str] = ()) -> list[str]:
    """Copy the result (without .git and the provider's bookkeeping folders), then make every
    verification file exactly the fixture's; returns what had to be restored or removed."""
    ignored = _IGNORED_IN_COPY | frozenset(bookkeeping_dirs)
    shutil.copytree(
        workspace,
        destination,
        symlinks=True,
        ignore=lambda d, names: [
            n for n in names if Path(d) == workspace and n in ignored
        ],
    )
    restored: list[str] = []
    pristine_files = {p for p in _relative_files(pristine, ignored) if matches_any(p, globs)}
    for rel in sorted(_relative_files(destination, ignored)):
        if matches_any(rel, globs) and rel not in pristine_files:
            target = destination / rel
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
            restored.append(rel)
    for rel in sorted(pristine_files):
        source, target = pristine / rel, destination / rel
        if target.is_symlink() or target.exists():
            if not target.is_symlink() and target.is_file() and _same(source, target):
                continue
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        restored.append(rel)
    return sorted(set(restored))


def _same(a: Path, b: Path) -> bool:
    return a.stat().st_mode & 0o777 == b.stat().st_mode & 0o777 and a.read_bytes() == b.read_bytes()


_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_UNITTEST_FAILED = re.compile(r"^FAILED \(([^)]*)\)", re.MULTILINE)
_UNITTEST_SKIPPED = re.compile(r"skipped=(\d+)")
_PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def parse_counts(framework: str, output: str) -> tuple[int, int, int]:
    """(ran, passed, failed) as the test runner itself reported them."""
    if framework == "unittest":
        ran_matches = _UNITTEST_RAN.findall(output)
        ran = int(ran_matches[-1]) if ran_matches else 0
        failed = skipped = 0
        if failed_match := _UNITTEST_FAILED.findall(output):
            for part in failed_match[-1].split(","):
                key, _, value = part.strip().partition("=")
                if key in ("failures", "errors", "unexpected successes"):
                    failed += int(value or 0)
                elif key == "skipped":
                    skipped += int(value or 0)
        elif ok_lines := re.findall(r"^OK(?: \(([^)]*)\))?\s*$", output, re.MULTILINE):
            skipped = sum(int(n) for n in _UNITTEST_SKIPPED.findall(ok_lines[-1] or ""))
        return ran, max(ran - failed - skipped, 0), failed
    counts: dict[str, int] = {}
    summary_lines = [line for line in output.splitlines() if _PYTEST_COUNTS.search(line)]
    if summary_lines:
        for number, word in _PYTEST_COUNTS.findall(summary_lines[-1]):
            key = "error" if word.startswith("error") else word
            counts[key] = counts.get(key, 0) + int(number)
    passed = counts.get("passed", 0) + counts.get("xfailed", 0)
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("xpassed", 0)
    return passed + failed, passed, failed


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
    workspace: Path,
    copy_dir: Path,
    log_path: Path,
    home: Path,
    *,
    wrap: list[str] | None = None,
    bookkeeping_dirs: Sequence[str] = (),
) -> VerificationResult:
    spec = case.spec.verification
    restored = prepare_copy(workspace, case.repo, copy_dir, spec.files,
                            bookkeeping_dirs=bookkeeping_dirs)
    home.mkdir(parents=True, exist_ok=True)
    argv = [*(wrap or []), *spec.command]
    stderr_path = log_path.with_suffix(".stderr.tmp")
    result = run_process(
        argv,
        cwd=copy_dir,
        env=verification_env(home),
        stdout_path=log_path,
        stderr_path=stderr_path,
        timeout_seconds=spec.timeout_seconds,
    )
    # test.log holds both streams: unittest reports on stderr, pytest on stdout.
    with open(log_path, "ab") as log:
        log.write(stderr_path.read_bytes())
        log.write(
            f"\n[cto-harness] command: {spec.command}\n[cto-harness] exit code: "
            f"{result.exit_code}{' (timed out)' if result.timed_out else ''}\n".encode()
        )
    stderr_path.unlink()
    output = log_path.read_text(encoding="utf-8", errors="replace")
    ran, passed, failed = parse_counts(spec.framework, output)
    reasons = []
    if result.timed_out:
        reasons.append(f"timed out after {spec.timeout_seconds}s")
    if result.exit_code != 0:
        reasons.append(f"exit code {result.exit_code}")
    if ran == 0:
        reasons.append("no tests ran")
    elif ran < case.spec.evidence.min_tests:
        reasons.append(
            f"only {ran} tests ran, the case expects at least {case.spec.evidence.min_tests}"
        )
    if failed:
        reasons.append(f"{failed} tests failed")
    return VerificationResult(
        status="failed" if reasons else "passed",
        command=list(spec.command),
        framework=spec.framework,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        tests_ran=ran,
        tests_passed=passed,
        tests_failed=failed,
        restored_files=restored,
        duration_ms=result.duration_ms,
        reason="; ".join(reasons) or None,
    )
