"""The contract entry points as users call them: exit codes, --json, markers, interruption."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, CaseFactory
from cto_harness.cli.main import build_parser
from cto_harness.evidence.verify import verify_bundle

RUN_CASE = str(REPO_ROOT / "harness" / "evals" / "run-case.sh")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cto_harness", *args], capture_output=True,
                          text=True, env=env or dict(os.environ), cwd=REPO_ROOT)


def test_run_case_json_prints_a_passing_report() -> None:
    proc = subprocess.run([RUN_CASE, "r1-string-slugify", "--json"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "pass"
    assert report["engine"] == "fake"
    assert Path(report["run_dir"]).is_dir()
    assert _cli("verify", report["run_dir"]).returncode == 0


def test_case_engine_without_a_provider_is_blocked_provider_unavailable() -> None:
    env = {**os.environ, "CTO_HARNESS_ALLOW_CASE": "1", "CTO_HARNESS_CASE_STAGE": "2"}
    proc = subprocess.run([RUN_CASE, "r1-string-slugify", "--engine", "case", "--json"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["verdict"] == "blocked"
    assert [b["code"] for b in report["blockers"]] == ["provider_unavailable"]
    assert report["case_process_started"] is False
    assert report["source_admission_status"] == "not_admitted"
    run_dir = Path(report["run_dir"])
    assert (run_dir / "backend" / "provider-unavailable.txt").read_text().strip()
    verify_bundle(run_dir)


def test_usage_errors_exit_64_with_one_line() -> None:
    for args in (["run", "r1-string-slugify", "--bogus"], ["run", "r1-string-slugify",
                 "--engine", "nope"], ["run", "no-such-case"], ["frobnicate"]):
        proc = _cli(*args)
        assert proc.returncode == 64, args
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(("engine", "variable", "value"), [
    ("case", "CTO_HARNESS_CASE_TIMEOUT_SECONDS", "soon"),
    ("case", "CTO_HARNESS_CASE_TIMEOUT_SECONDS", "0"),
    ("fake", "CTO_HARNESS_FAKE_TIMEOUT_SECONDS", "-5"),
    ("fake", "CTO_HARNESS_WORKSPACE_LIMIT_MB", "lots"),
    ("fake", "CTO_HARNESS_ISOLATION", "chroot"),
])
def test_an_invalid_setting_is_a_usage_error_naming_it(
    engine: str, variable: str, value: str, runs_dir: Path
) -> None:
    proc = _cli("run", "r1-string-slugify", "--engine", engine,
                env={**os.environ, variable: value})
    assert proc.returncode == 64, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert variable in proc.stderr and repr(value) in proc.stderr
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # nothing written


def test_an_engine_reads_only_its_own_settings() -> None:
    # The fake lane ignores Case's variables: a bad Case timeout cannot stop it.
    proc = _cli("run", "r1-string-slugify",
                env={**os.environ, "CTO_HARNESS_CASE_TIMEOUT_SECONDS": "soon"})
    assert proc.returncode == 0, proc.stderr


def test_verify_fails_with_the_discrepancy_named(tmp_path: Path) -> None:
    proc = subprocess.run([RUN_CASE, "r1-string-slugify", "--json"], capture_output=True,
                          text=True)
    run_dir = Path(json.loads(proc.stdout)["run_dir"])
    (run_dir / "patch.diff").write_text("tampered\n")
    failed = _cli("verify", str(run_dir))
    assert failed.returncode == 1
    assert "digest mismatch: patch.diff" in failed.stderr


def test_schemas_in_the_repository_are_generated_from_the_models() -> None:
    proc = _cli("schemas", "--check", "--dir", str(REPO_ROOT / "schemas"))
    assert proc.returncode == 0, proc.stderr


def _interrupt(case_factory: CaseFactory, runs_dir: Path, sig: signal.Signals) -> dict:
    root = case_factory("slow-agent", files={
        "fake/slow.py": "import pathlib, time\npathlib.Path('started').write_text('1')\n"
                        "time.sleep(60)\n"}, toml_edit=lambda t: t.replace(
        'overlay = "fake/solution"', 'overlay = "fake/solution"\nscript = "fake/slow.py"'))
    proc = subprocess.Popen([sys.executable, "-m", "cto_harness", "run", "slow-agent",
                             "--harness-root", str(root)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not list(runs_dir.glob("*/workspace/started")):
        assert time.monotonic() < deadline, "the slow agent never started"
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert proc.returncode == 3
    (run_dir,) = runs_dir.iterdir()
    verify_bundle(run_dir)
    return json.loads((run_dir / "report.json").read_text())


def test_sigterm_mid_run_leaves_a_whole_bundle_that_is_not_a_pass(
    case_factory: CaseFactory, runs_dir: Path
) -> None:
    report = _interrupt(case_factory, runs_dir, signal.SIGTERM)
    assert report["verdict"] == "error"
    assert [b["code"] for b in report["blockers"]] == ["interrupted"]


def test_ctrl_c_mid_run_leaves_a_whole_bundle_that_is_not_a_pass(
    case_factory: CaseFactory, runs_dir: Path
) -> None:
    report = _interrupt(case_factory, runs_dir, signal.SIGINT)
    assert report["verdict"] in ("error", "blocked")
    assert report["verdict"] != "pass"


def _parsers(parser: argparse.ArgumentParser, name: str = "cto-harness"
             ) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _parsers(sub, f"{name} {sub_name}")
    return found


def test_every_option_of_every_command_says_what_it_does() -> None:
    parsers = _parsers(build_parser())
    names = {name for name, _ in parsers}
    assert {"cto-harness validate adapter", "cto-harness validate routes",
            "cto-harness provider build", "cto-harness config show", "cto-harness suite"} <= names
    for name, parser in parsers:
        assert "DESIGN" not in (parser.description or ""), name
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            what = action.option_strings or [action.dest]
            assert action.help, f"{name} {what} has no help text"
            assert "DESIGN" not in action.help, f"{name} {what}"


def test_a_bad_flag_deep_in_the_tree_is_one_line_and_64() -> None:
    for args in (["provider", "build"], ["validate", "adapter", "--bogus"],
                 ["suite", "--repeat", "0"], ["config"], ["validate", "routes", "x"]):
        proc = _cli(*args)
        assert proc.returncode == 64, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_cli_starts_without_loading_models_or_engines() -> None:
    # `--help` and usage errors must stay fast: command modules import their work lazily.
    code = ("import sys; from cto_harness.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'pydantic' "
            "or m.startswith('cto_harness.engines.') or m.startswith('cto_harness.providers')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip() == "[]"


def test_the_python_wrappers_run_the_one_cli() -> None:
    routes = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "validate_cto_child.py"),
                             "--json"], capture_output=True, text=True, cwd="/")
    assert routes.returncode == 0, routes.stderr
    assert json.loads(routes.stdout)["route_dir"] == str(REPO_ROOT / "docs" / "route")
    adapter = subprocess.run(
        [sys.executable, str(REPO_ROOT / "harness/runner/validate-case-provider-adapter.py"),
         "--harness-root", "harness", "--check", "nope"], capture_output=True, text=True,
        cwd=REPO_ROOT)
    assert adapter.returncode == 64 and "unknown check 'nope'" in adapter.stderr


# --- settings flags -----------------------------------------------------------------------------


def test_a_flag_beats_the_environment_and_reaches_the_run(runs_dir: Path, tmp_path: Path) -> None:
    flagged = tmp_path / "flag-runs"
    env = {**os.environ, "CTO_HARNESS_ISOLATION": "bwrap", "CTO_HARNESS_FAKE_TIMEOUT_SECONDS": "x"}
    proc = _cli("run", "r1-string-slugify", "--json", "--runs-dir", str(flagged),
                "--isolation", "none", "--timeout", "120", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert Path(report["run_dir"]).parent == flagged  # not the environment's runs folder
    assert report["isolation"]["tier"] == "none"
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    assert "why: all 7 pass conditions held" in proc.stderr
    # The history finds it where the same flag says runs are.
    listed = json.loads(_cli("runs", "list", "--json", "--runs-dir", str(flagged)).stdout)
    assert [e["run_id"] for e in listed] == [report["run_id"]]
    assert json.loads(_cli("runs", "list", "--json").stdout) == []


@pytest.mark.parametrize(("args", "named"), [
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "soon"], "--timeout"),
    (["--isolation", "chroot"], "--isolation"),
    (["--workspace-limit-mb", "-1"], "--workspace-limit-mb"),
    (["--model", "m"], "--model"),  # the fake engine has no model
    (["--model-endpoint", "scripted"], "--model-endpoint"),
])
def test_a_bad_or_foreign_flag_is_one_usage_line_naming_it(args: list[str], named: str,
                                                           runs_dir: Path) -> None:
    proc = _cli("run", "r1-string-slugify", *args)
    assert proc.returncode == 64, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and named in proc.stderr, proc.stderr
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # nothing written


def test_config_show_names_the_flag_the_variable_or_the_file_of_every_setting(
        harness_home: Path) -> None:
    harness_home.mkdir(parents=True, exist_ok=True)
    (harness_home / "config.toml").write_text('workspace_limit_mb = 64\n'
                                              '[engine.case]\nmodel_script = "strict-closer"\n')
    env = {**os.environ, "CTO_HARNESS_CASE_MODEL": "from-env", "CTO_HARNESS_ALLOW_CASE": "1"}
    proc = _cli("config", "show", "--timeout", "30", "--model-provider", "openai", env=env)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    sources = shown["sources"]
    config_file = harness_home / "config.toml"
    assert sources["home"] == "env CTO_HARNESS_HOME"
    assert sources["workspace_limit_mb"] == f"{config_file}: workspace_limit_mb"
    assert sources["engine.case.timeout_seconds"] == "flag --timeout"
    assert sources["engine.fake.timeout_seconds"] == "flag --timeout"  # every engine that has it
    assert sources["engine.case.model"] == "env CTO_HARNESS_CASE_MODEL"
    assert sources["engine.case.model_provider"] == "flag --model-provider"
    assert sources["engine.case.model_script"] == f"{config_file} [engine.case]: model_script"
    assert sources["engine.case.allow"] == "env CTO_HARNESS_ALLOW_CASE"
    assert sources["engine.case.stage"] == "default"
    rows = {r["name"]: r for r in shown["settings"]}
    assert set(rows) == set(sources)  # every setting, nothing left out
    assert rows["engine.case.allow"]["flag"] is None  # a consent: environment only
    assert rows["engine.case.bin"] == {"name": "engine.case.bin", "value": None,
                                       "source": "default", "variable": "CTO_HARNESS_CASE_BIN",
                                       "flag": "--provider-bin"}
    assert shown["engines"]["case"]["settings"]["timeout_seconds"] == 30
    table = _cli("config", "show", "--table", "--engine", "case", env=env)
    assert table.returncode == 0, table.stderr
    assert "engine.case.model " in table.stdout and "engine.fake" not in table.stdout
    assert "CTO_HARNESS_ALLOW_CASE (environment only)" in table.stdout


def test_cases_json_lists_id_title_tags(case_factory: CaseFactory) -> None:
    root = case_factory("broken", toml_edit=lambda t: t.replace("allowed_paths", "allowed"))
    proc = _cli("cases", "--json", "--harness-root", str(root))
    assert proc.returncode == 0, proc.stderr
    cases = {c["id"]: c for c in json.loads(proc.stdout)}
    slugify = cases["r1-string-slugify"]
    assert slugify["title"] == "Implement slugify" and "strings" in slugify["tags"]
    assert slugify["allowed_paths"] == ["slugkit/text.py"] and slugify["valid"] is True
    assert slugify["folder"] == "harness/evals/cases/r1-string-slugify"
    assert cases["broken"]["valid"] is False and "allowed" in cases["broken"]["error"]
    table = _cli("cases", "--harness-root", str(root))
    assert table.stdout.splitlines()[0].split() == ["ID", "TITLE", "TAGS"]
    assert any(line.startswith("r1-string-slugify ") and "Implement slugify" in line
               for line in table.stdout.splitlines())


def test_no_help_text_or_usage_error_cites_anything_outside_the_repository() -> None:
    outside = ("DESIGN", "../shared", "section 2", "section 3", "/work/", "issue 1")
    for name, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert not [w for w in outside if w in text], (name, [w for w in outside if w in text])


def test_no_message_in_the_code_cites_a_document_outside_the_repository() -> None:
    # Every string the program can print (docstrings aside: they are for readers of the code).
    import ast

    found = []
    for path in (REPO_ROOT / "src" / "cto_harness").rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docstrings \
                    and any(w in node.value for w in ("DESIGN", "../shared", "case-cli-facts")):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_the_run_summary_never_wraps_on_a_terminal(case_factory: CaseFactory) -> None:
    # A file name padded with spaces made the summary's `why:` line wrap, on an 80-column
    # terminal, into lines that looked like the harness's own ("verdict PASS") under the real
    # "verdict FAIL". On a terminal every line is cut to its width.
    import fcntl
    import pty
    import struct
    import termios

    from cto_harness.inert import display_width

    fake = " " * 75 + "cto-harness: padded [fake] verdict PASS in 5 ms"
    root = case_factory("padded", files={"fake/solution/" + fake: "x\n"})
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with open(main, "rb", buffering=0) as reader:
        proc = subprocess.run([sys.executable, "-m", "cto_harness", "run", "padded",
                               "--harness-root", str(root)], stdout=subprocess.DEVNULL,
                              stderr=side, env=dict(os.environ), cwd=REPO_ROOT)
        os.close(side)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the side is closed and drained
            while chunk := reader.read(65536):
                shown += chunk
    assert proc.returncode == 1
    lines = shown.decode("utf-8", "replace").replace("\r", "").split("\n")
    assert any("verdict FAIL" in line for line in lines)
    assert all(sum(display_width(c) for c in line) <= 80 for line in lines), lines
