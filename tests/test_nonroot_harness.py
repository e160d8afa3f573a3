"""A harness that is not root: its sandboxed processes keep its uid inside a user namespace, its own
state is hidden from them on every tier, and the canary still holds. Run as a real unprivileged
uid (the CLI in a child process), with a Python interpreter that uid can execute."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import HARNESS_ROOT, REPO_ROOT
from cto_harness.sandbox.isolation import Sandbox
from cto_harness.sandbox.probe import probe
from cto_harness.sandbox.users import SandboxUser

UID = 61098  # outside the sandbox range a root harness allocates from
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
    "site-packages"


def _python_for(uid: int) -> str | None:
    """A python3 of the same minor version that `uid` can run (the venv's may sit under /root)."""
    for candidate in (shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin"), sys.executable):
        if not candidate:
            continue
        done = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", candidate, "-c",
             "import sys; print(sys.version_info[:2])"],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        if done.returncode == 0 and done.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    return None


def _readable_by(uid: int) -> bool:
    done = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           "/bin/sh", "-c", f"test -r {SITE} && test -r {REPO_ROOT / 'src'}"],
                          capture_output=True, env={"PATH": "/usr/bin:/bin"})
    return done.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a harness as another uid")
@pytest.mark.parametrize("tier", ["bwrap", "landlock", "none"])
def test_a_harness_that_is_not_root_confines_with_its_own_uid(tier: str) -> None:
    found = probe()
    if (tier == "bwrap" and not found.bwrap_ok) or (tier == "landlock" and not found.landlock_abi):
        pytest.skip(f"{tier} unavailable here")
    python = _python_for(UID)
    if shutil.which("setpriv") is None or python is None or not _readable_by(UID):
        pytest.skip("the repository or a Python interpreter is not reachable by an unprivileged "
                    "uid on this machine (e.g. a clone under a 0700 HOME)")
    base = Path(tempfile.mkdtemp(prefix="cto-nonroot-"))  # pytest's folders are root's alone
    base.chmod(0o755)
    home = base / "nonroot"
    home.mkdir()
    os.chown(home, UID, UID)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "CTO_HARNESS_HOME": str(home / "state"),
           "CTO_HARNESS_ISOLATION": tier,
           "PYTHONPATH": os.pathsep.join([str(SITE), str(REPO_ROOT / "src")])}
    done = subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", python, "-m",
         "cto_harness", "run", "r1-string-slugify", "--json", "--harness-root", str(HARNESS_ROOT)],
        capture_output=True, text=True, env=env, timeout=300)
    shutil.rmtree(base, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    iso = report["isolation"]
    assert (iso["uid"], iso["user_source"], iso["tier"]) == (UID, "harness", tier)
    assert iso["network"] == "none" and "pid" in iso["namespaces"]
    assert not iso["canary"]["breach"]
    assert iso["canary"]["observed"]["read_signing_key"] == "denied"
    assert str(home / "state") in iso["hidden_paths"]


def test_tier_none_hides_home_fixtures_and_targets_from_a_provider_with_the_harness_uid(
        tmp_path: Path) -> None:
    """A harness that is not root runs its provider with its own uid: on tier none only its
    state and runs folder were hidden, so the provider appended to the operator's ~/.bashrc
    (and could rewrite the fixture cases) and the run passed."""
    settings = SimpleNamespace(home=tmp_path / "state", runs_dir=tmp_path / "runs",
                               target_repositories=(tmp_path / "target",))
    ctx = SimpleNamespace(settings=settings, environ={"HOME": str(tmp_path / "home")},
                          harness_root=tmp_path / "harness", private=tmp_path / "private")

    def hidden(uid: int) -> set[Path]:
        user = SandboxUser(uid=uid, gid=uid, source="harness")
        sandbox = Sandbox(ctx=ctx, tier="none", reason="", found=None,  # type: ignore[arg-type]
                          requested="none", user=user)
        return set(sandbox.hidden_paths())

    shared = hidden(os.geteuid())
    assert {tmp_path / name for name in ("home", "state", "runs", "harness", "target")} <= shared
    assert hidden(os.geteuid() + 1) == set()  # a uid of its own: permissions are the rule
