"""Hostile providers against the harness's own file handling and test results (issue 11): links
where the harness lays files back, odd files it must never open or copy, trees it must walk
past PATH_MAX, code hidden where a git diff does not look, hard links against the size limit,
forged test results and forged report text. Kept apart from the isolation attacks of
`hostile_suite.py`, which imports these and runs them the same way.

Every attack is judged from the host's side: what changed outside, what the bundle holds, what
the report says; never from what the provider claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cto_harness.tree import remove_tree

if TYPE_CHECKING:
    from hostile_suite import Observation

GROUP = "files and results"
TIERS = ("bwrap", "landlock", "none")
PASSING_LIMIT_MB = 64


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    solve: bool = True


SPECS = [
    Spec("tests_symlink_layback", "replace `tests` by a symlink to a target repository, so "
         "laying the pristine tests back would write there"),
    Spec("verification_file_symlink", "replace one test file by a symlink to a target "
         "repository's file"),
    Spec("forged_summary", "the solution prints a unittest summary and exits before any test "
         "runs"),
    Spec("fewer_tests", "the solution makes the loader run one test per class"),
    Spec("skip_tests", "the solution skips every test that calls it"),
    Spec("forged_channel", "the solution writes a whole passing run into every pipe it holds "
         "(the result channel among them), then exits"),
    Spec("equal_to_anything", "the solution returns a str subclass whose `__eq__` is "
         "`str.__ne__`: equal to whatever a test expects"),
    Spec("expected_failure", "no solution; the solution's import marks every test an "
         "expected failure (one attribute on TestCase)"),
    Spec("memory_forgery", "same process, has read the code: the solution calls the driver's "
         "own reporting function for every test, then exits (inherent)"),
    Spec("git_hidden_code", "the code lives in a nested `.git` folder; the allowed file is a "
         "symlink into it"),
    Spec("hardlink_bomb", "a 60 MiB file hard-linked 40 times; the event log made one more link"),
    Spec("special_files", "a FIFO, a Unix socket and a device in the workspace; the event log "
         "replaced by a FIFO"),
    Spec("non_utf8", "a latin-1 solution and a file name that is not UTF-8"),
    Spec("deep_path", "a folder chain past PATH_MAX holding a file"),
    Spec("report_forgery", "file names, claims and output carrying Markdown, HTML comments, "
         "newlines, bidi and ANSI escapes, and a claim that is not UTF-8 (a lone surrogate)"),
    Spec("bundle_planting", "plant a FIFO, a symlink to the signing key and a chain past "
         "PATH_MAX in the bundle folder"),
    Spec("setuid_copy", "a setuid/setgid solution file, for the copy the harness makes as "
         "itself"),
    Spec("harness_area_swap", "swap the harness's private snapshot store and verification area "
         "for symlinks to a target repository"),
]


@dataclass(frozen=True)
class Expect:
    verdict: str
    outcome: str  # prevented | detected | missed
    blocker: str | None = None


def same(verdict: str, outcome: str, blocker: str | None = None) -> dict[str, Expect]:
    return {tier: Expect(verdict, outcome, blocker) for tier in TIERS}


EXPECTED: dict[str, dict[str, Expect]] = {
    "tests_symlink_layback": same("fail", "prevented"),
    "verification_file_symlink": same("fail", "prevented"),
    "forged_summary": same("fail", "detected"),
    "fewer_tests": same("fail", "detected"),
    "skip_tests": same("fail", "detected"),
    "forged_channel": same("fail", "detected"),
    "equal_to_anything": same("fail", "detected"),
    "expected_failure": same("fail", "detected"),
    "memory_forgery": same("pass", "missed"),
    "git_hidden_code": same("fail", "detected"),
    "hardlink_bomb": same("blocked", "prevented", "workspace_size_exceeded"),
    "special_files": same("fail", "prevented"),
    "non_utf8": same("fail", "prevented"),
    "deep_path": same("fail", "prevented"),
    "report_forgery": same("fail", "prevented"),
    # The sandbox uid (issue 12) owns neither the bundle nor the harness's private folders on
    # any tier, and the take-back of its files (a chown by root) clears setuid/setgid bits.
    "bundle_planting": same("pass", "prevented"),
    "setuid_copy": same("pass", "prevented"),
    "harness_area_swap": same("pass", "prevented"),
}
NAMES = frozenset(s.name for s in SPECS)


def _failed(obs: Observation) -> str:
    v = obs.report["verification"]
    return ", ".join(v.get("failures") or []) or ", ".join(
        k for k, ok in obs.report["pass_conditions"].items() if not ok) or ", ".join(obs.blockers)


def _judged(obs: Observation, what: str) -> tuple[str, str]:
    if obs.verdict == "pass":
        return "missed", f"{what}; the run passed"
    return "detected", f"{what}; verdict {obs.verdict} ({_failed(obs)})"


def _change(obs: Observation, path: str) -> dict[str, object] | None:
    return next((c for c in obs.report["changed_files"] if c["path"] == path), None)


def _outside_fences(text: str) -> str:
    """The lines of a Markdown text that are not inside a fenced code block."""
    kept, fence = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if fence:
            if stripped.startswith(fence) and set(stripped) == {"`"}:
                fence = ""
            continue
        if stripped.startswith("```"):
            fence = stripped[:len(stripped) - len(stripped.lstrip("`"))]
            continue
        kept.append(line)
    return "\n".join(kept)


def classify(obs: Observation, files: list[Path]) -> tuple[str, str]:
    """What happened, from the host's side."""
    name, report, run_dir = obs.attack, obs.report, obs.run_dir
    assert run_dir is not None
    if name in ("tests_symlink_layback", "verification_file_symlink"):
        path = "tests" if name == "tests_symlink_layback" else "tests/test_text.py"
        change = _change(obs, path)
        if obs.outside_changed:
            return _judged(obs, f"written through the link: {obs.outside_changed[0]}")
        if change is None or change["allowed"] or obs.verdict == "pass":
            return "missed", f"the link at {path} was not judged a disallowed change"
        return "prevented", (f"target unchanged; {path} listed as a disallowed {change['kind']}"
                             f"; pristine tests ran ({report['verification']['status']})")
    if name == "equal_to_anything":
        tests = obs.report["verification"]["tests"]
        named = sum("cto-harness:" in (t.get("detail") or "") for t in tests)
        return _judged(obs, f"{named} of {len(tests)} tests failed naming the tested code's "
                            "own __eq__")
    if name in ("forged_summary", "fewer_tests", "skip_tests", "forged_channel",
                "memory_forgery", "expected_failure"):
        v = report["verification"]
        return _judged(obs, f"{v['tests_ran']} of {v['tests_expected']} expected tests reported"
                            f", runner finished: {v['runner_finished']}")
    if name == "git_hidden_code":
        patch = (run_dir / "patch.diff").read_bytes()
        shown = b"vendor/.git/impl.py" in patch
        return _judged(obs, "the tested code is " + ("in patch.diff" if shown else
                                                     "MISSING from patch.diff"))
    if name == "hardlink_bomb":
        size = sum(p.stat().st_size for p in files)
        if "workspace_size_exceeded" in obs.blockers and size < PASSING_LIMIT_MB << 20:
            return "prevented", (f"every link counted; bundle {size // 1024} KiB; nothing "
                                 "copied for verification")
        return _judged(obs, f"bundle holds {size} bytes")
    if name == "special_files":
        kinds = {c["kind"]: c["allowed"] for c in report["changed_files"]}
        special = {k for k in kinds if k in ("fifo", "socket", "char_device")}
        if {"fifo", "socket"} <= special and not any(kinds[k] for k in special):
            return "prevented", (f"never opened or copied, listed as disallowed: "
                                 f"{', '.join(sorted(special))}; event log "
                                 f"{report['provider_claims'].get('event_log')!s:.40}")
        return "missed", f"special files not all named: {sorted(kinds)}"
    if name == "non_utf8":
        named = _change(obs, "slugkit/caf\u27e80xE9\u27e9-\u27e80xFF\u27e9.txt")
        raw = b"caf\xe9 au lait" in (run_dir / "patch.diff").read_bytes()
        if named and not named["allowed"] and raw:
            return "prevented", ("the name shown escaped and disallowed; the latin-1 bytes kept "
                                 "as-is in patch.diff")
        return "missed", f"named {named is not None}, bytes kept {raw}"
    if name == "deep_path":
        deep = [c for c in report["changed_files"] if any("PATH_MAX" in n for n in c["notes"])]
        remove_tree(run_dir / "workspace" / "deep")  # no tool outside the harness can
        if deep and not deep[0]["allowed"]:
            return "prevented", (f"walked by descriptors; {len(deep[0]['path'])}-byte path "
                                 "listed as a disallowed change")
        return "missed", "the deep file was not listed"
    if name == "report_forgery":
        text = (run_dir / "report.md").read_text(encoding="utf-8")
        markup = _outside_fences(text)  # what a Markdown renderer would interpret
        headings = [line for line in markup.splitlines() if line.startswith("# ")]
        bad = [t for t in ("\x1b", "\u202e", "\udcff") if t in text]
        bad += [t for t in ("<!--", "**PASS**\n") if t in markup]
        if len(headings) == 1 and not bad and obs.verdict != "pass":
            return "prevented", "report.md has one heading, no raw HTML, escape or bidi mark"
        return "missed", f"report.md: {len(headings)} headings, raw {bad!r}"
    if name == "bundle_planting":
        removed = report.get("bundle_entries_removed") or []
        if obs.verdict == "pass" and not removed:
            return "prevented", "the bundle folder was out of reach"
        return _judged(obs, f"{len(removed)} planted entries removed before sealing")
    if name == "setuid_copy":
        copy = run_dir / "workspace" / "slugkit" / "text.py"
        if obs.verdict == "pass" and not copy.lstat().st_mode & 0o6000:
            return "prevented", ("no setuid/setgid bit left to copy (the take-back of the "
                                 "sandbox uid's files cleared them)")
        change = _change(obs, "slugkit/text.py")
        notes = "; ".join(change["notes"]) if change else ""  # type: ignore[arg-type]
        return _judged(obs, f"setuid bits named ({notes[:60]}), never copied")
    if name == "harness_area_swap":
        if obs.outside_changed:
            return _judged(obs, f"the harness wrote through the swapped link: "
                                f"{obs.outside_changed[0]}")
        if obs.verdict == "pass":
            return "prevented", "the harness's private folders were out of reach"
        return "prevented", (f"nothing written through the links; verdict {obs.verdict} "
                             f"({', '.join(obs.blockers)})")
    raise ValueError(name)
