"""Fixture cases: `harness/evals/cases/<case-id>/case.toml` beside a pristine `repo/`."""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from cto_harness.contracts import CASE_ID_PATTERN, CaseSpec
from cto_harness.errors import Blocked, BlockerCode, UsageError
from cto_harness.fsutil import PathEscape, resolve_within


@dataclass(frozen=True)
class FixtureCase:
    spec: CaseSpec
    directory: Path

    @property
    def repo(self) -> Path:
        return self.directory / "repo"

    def overlay_dir(self) -> Path:
        return self.directory / self.spec.fake.overlay


def find_harness_root(start: Path | None = None) -> Path:
    """The `harness/` folder: $CTO_HARNESS_ROOT, else the nearest `harness/` above `start`."""
    if os.environ.get("CTO_HARNESS_ROOT"):
        return Path(os.environ["CTO_HARNESS_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "harness" / "evals" / "cases").is_dir():
            return folder / "harness"
        if folder.name == "harness" and (folder / "evals" / "cases").is_dir():
            return folder
    raise UsageError(
        "cannot find the harness folder (harness/evals/cases): run from the repository root, "
        "pass --harness-root or set CTO_HARNESS_ROOT"
    )


def cases_root(harness_root: Path) -> Path:
    return harness_root / "evals" / "cases"


def list_case_ids(harness_root: Path) -> list[str]:
    root = cases_root(harness_root)
    return sorted(
        p.name for p in root.iterdir()
        if (p / "case.toml").is_file() and CASE_ID_PATTERN.match(p.name)
    )


def case_directory(harness_root: Path, case_id: str) -> Path:
    """Check the id's form and that it names an existing case; both are usage errors (exit 64)."""
    if not CASE_ID_PATTERN.fullmatch(case_id):
        raise UsageError(f"invalid case id {case_id!r}: case ids match [a-z0-9][a-z0-9-]*")
    directory = cases_root(harness_root) / case_id
    if not (directory / "case.toml").is_file():
        known = ", ".join(list_case_ids(harness_root)) or "none"
        raise UsageError(f"unknown case id {case_id!r} (known: {known})")
    return directory


def load_case(directory: Path) -> FixtureCase:
    """Parse and validate a case; a malformed one is blocked `task_contract_invalid`."""
    source = directory / "case.toml"
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Blocked(BlockerCode.TASK_CONTRACT_INVALID, f"{source.name} is not valid TOML: {exc}") from exc
    try:
        spec = CaseSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise Blocked(BlockerCode.TASK_CONTRACT_INVALID, f"{source.name}: {problems}") from exc
    if spec.id != directory.name:
        raise Blocked(
            BlockerCode.TASK_CONTRACT_INVALID,
            f"{source.name}: id {spec.id!r} does not match its folder {directory.name!r}",
        )
    case = FixtureCase(spec=spec, directory=directory)
    if case.repo.is_symlink() or not case.repo.is_dir():
        # A link would have the harness copy (as the operator) whatever it names to the provider.
        raise Blocked(BlockerCode.TASK_CONTRACT_INVALID,
                      f"case {spec.id} has no repo/ folder (a link is not one)")
    if os.path.lexists(case.repo / ".git"):
        # The workspace is a copy of repo/, and the harness runs `git init/add/commit` in it
        # unconfined: a `.git` there would be git's own, its config naming commands to run
        # (core.fsmonitor) and a `gitdir:` file or a link another repository to commit into.
        raise Blocked(BlockerCode.TASK_CONTRACT_INVALID,
                      f"case {spec.id}: repo/.git must not exist (the harness gives the "
                      f"workspace its own git history)")
    for relative in (spec.fake.overlay, spec.fake.script):
        if relative is not None:
            try:
                # Also catches a symlink inside the case folder that points out of it.
                resolve_within(directory, relative, what="fake solution path")
            except PathEscape as exc:
                raise Blocked(BlockerCode.TASK_CONTRACT_INVALID, str(exc)) from exc
    for tree in (case.repo, case.overlay_dir()):
        special = _special_entry(tree)
        if special is not None:
            raise Blocked(BlockerCode.TASK_CONTRACT_INVALID,
                          f"case {spec.id}: {special.relative_to(directory).as_posix()!r} is "
                          "neither a file, a folder nor a symlink (the harness copies only "
                          "those)")
    return case


def _special_entry(root: Path) -> Path | None:
    """The first FIFO, socket or device under `root` (no link followed), if any. The harness
    copies repo/ and the fake overlay with shutil, which refuses them mid-copy (a traceback in
    `case check`, a half-made workspace in a run): refused before anything is copied."""
    if root.is_symlink() or not root.is_dir():
        return None
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                return Path(folder) / name
    return None


def case_summary(harness_root: Path, case_id: str) -> dict[str, object]:
    """What `cto-harness cases --json` says of a case: its id, title, tags and what it asks
    for; a case that does not load is listed with the reason (`valid: false`)."""
    directory = cases_root(harness_root) / case_id
    try:
        spec = load_case(directory).spec
    except Blocked as exc:
        return {"id": case_id, "valid": False, "error": exc.message}
    first_line = next((line.strip() for line in spec.task.splitlines() if line.strip()), "")
    return {
        "id": spec.id, "valid": True, "title": spec.title, "tags": list(spec.tags),
        "summary": first_line, "allowed_paths": list(spec.allowed_paths),
        "framework": spec.verification.framework, "min_tests": spec.evidence.min_tests,
        "folder": directory.relative_to(harness_root.parent).as_posix()
        if directory.is_relative_to(harness_root.parent) else str(directory),
    }
