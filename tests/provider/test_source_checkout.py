"""A local source checkout is data, never configuration: its `.git/config` runs nothing as the
operator, a rewritten object does not build under the pin, a `.git` link is not followed.
Real git, the real CLI; each test refuses before Bun runs, so they are quick."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from cto_harness.providers.checkout import observe_checkout
from cto_harness.providers.registry import registry_path
from standin_helpers import (
    git,
    head_commit,
    make_standin_repo,
    run_provider_cli,
    settings_for,
    write_policy_accepting,
)


def plant_commands(repo: Path, marker: Path) -> None:
    """The checkout's own config names commands git runs from `git status`: an fsmonitor hook,
    and a clean filter for every path (the attribute in an untracked .gitattributes); a tracked
    file's times change so that status would read it through the filter."""
    git(repo, "config", "core.fsmonitor", f"sh -c 'echo fsmonitor >> {marker}'; false")
    git(repo, "config", "filter.evil.clean", f"sh -c 'echo filter >> {marker}; cat'")
    (repo / ".gitattributes").write_text("* filter=evil\n")
    os.utime(repo / "package.json", (1, 1))


def test_the_checkouts_config_runs_nothing_while_it_is_observed(tmp_path: Path) -> None:
    repo = make_standin_repo(tmp_path)
    marker = tmp_path / "ran.txt"
    plant_commands(repo, marker)
    (repo / "README.md").write_text("changed\n")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("excluded.txt\n")
    (repo / "excluded.txt").write_text("x\n")

    state = observe_checkout(repo)

    assert not marker.exists(), marker.read_text()
    assert state.head == head_commit(repo)
    # What git says, its index and info/exclude honoured, the filter inert.
    assert state.porcelain_status == [" M README.md", "?? .gitattributes"]


def test_a_build_refused_at_its_origin_ran_nothing_the_checkout_configures(
        tmp_path: Path) -> None:
    repo = make_standin_repo(tmp_path, origin="https://evil.example/not-case.git")
    marker = tmp_path / "ran.txt"
    plant_commands(repo, marker)
    policy = write_policy_accepting(tmp_path / "policy.toml", head_commit(repo))
    result = run_provider_cli(tmp_path / "home", "build", "--source", str(repo), "--commit",
                              head_commit(repo), "--policy", str(policy))
    assert result.returncode == 2, result.stderr
    assert "blocked: source_origin_mismatch: " in result.stderr
    assert not marker.exists(), marker.read_text()


def test_a_checkout_whose_object_was_rewritten_is_not_built_under_the_pin(
        tmp_path: Path) -> None:
    repo = make_standin_repo(tmp_path)
    pin = head_commit(repo)
    blob = git(repo, "rev-parse", f"{pin}:src/scenario.ts")
    loose = repo / ".git" / "objects" / blob[:2] / blob[2:]
    other = b'export const SCENARIO: string = "not what the pin holds";\n'
    loose.chmod(0o644)
    loose.write_bytes(zlib.compress(b"blob %d\0" % len(other) + other))
    assert head_commit(repo) == pin  # the checkout still claims the pin

    home = tmp_path / "home"
    policy = write_policy_accepting(tmp_path / "policy.toml", pin)
    result = run_provider_cli(home, "build", "--source", str(repo), "--commit", pin,
                              "--policy", str(policy))
    assert result.returncode == 2, result.stderr
    assert "blocked: source_unavailable: " in result.stderr
    assert blob in result.stderr  # git names the object it did not receive
    assert not registry_path(settings_for(home)).exists()


def test_a_git_link_in_the_checkout_is_refused_not_followed(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "a.txt").write_text("x\n")
    (repo / ".git").symlink_to("/proc")
    result = run_provider_cli(tmp_path / "home", "build", "--source", str(repo))
    assert result.returncode == 2, result.stderr
    assert "blocked: source_unavailable: " in result.stderr
    assert ".git" in result.stderr and "is a link" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_credential_in_the_source_url_is_never_recorded_or_shown(tmp_path: Path) -> None:
    # Reports, provenance and the registry are world-readable and shipped to cluster nodes; a
    # token in `--source https://user:TOKEN@mirror/...` went into each, and into the progress.
    home = tmp_path / "home"
    source = "https://someone:SECRET-TOKEN-4242@127.0.0.1:9/case.git"
    result = run_provider_cli(home, "build", "--source", source, "--source-url",
                              "https://github.com/workos/case.git")
    assert result.returncode == 2, result.stderr
    assert "blocked: source_unavailable: " in result.stderr
    assert "SECRET-TOKEN-4242" not in result.stdout + result.stderr
    assert "https://***@127.0.0.1:9/case.git" in result.stderr
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"SECRET-TOKEN-4242" not in path.read_bytes(), path
