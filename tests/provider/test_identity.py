"""The binary identity probe: `--help` only, private state directories, a time limit."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from cto_harness.errors import Blocked
from cto_harness.providers.identity import IdentityMismatch, probe_binary_identity
from cto_harness.providers.policy import ProviderPolicy, load_policy
from cto_harness.sandbox.confined import PROBE_FILE_SIZE_LIMIT
from standin_helpers import POLICY_PATH, write_script_binary
from world_helpers import world_dir


@pytest.fixture
def policy() -> ProviderPolicy:
    return load_policy(POLICY_PATH)


def test_probe_passes_on_ca_help_and_records_evidence(tmp_path: Path, policy: ProviderPolicy):
    binary = write_script_binary(tmp_path / "ca")
    evidence = probe_binary_identity(binary, policy)
    assert evidence.passed and evidence.exit_code == 0
    assert evidence.argv == [str(binary), "--help"]
    assert evidence.markers_found == policy.binary_identity.markers
    assert evidence.commands_found == policy.binary_identity.commands
    assert len(evidence.help_sha256) == 64 and evidence.digest() != evidence.help_sha256


def test_probe_never_runs_version_and_uses_private_state(
    tmp_path: Path, policy: ProviderPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_home = tmp_path / "real-home"
    real_home.mkdir()
    monkeypatch.setenv("HOME", str(real_home))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-secret-value")
    binary = tmp_path / "ca"
    binary.write_text(
        "#!/bin/sh\n"
        'echo "CALL $* HOME=$HOME DATA=$CASE_DATA_DIR PI=$PI_CODING_AGENT_DIR '
        'KEY=${ANTHROPIC_API_KEY:-none}"\n'
        'mkdir -p "$PI_CODING_AGENT_DIR" "$HOME/.pi/agent" && touch "$HOME/.pi/agent/auth.json"\n'
        "echo 'Usage: ca <command> [options]'\n"
        "echo 'run watch create status mark-tested mark-reviewed'\n"
    )
    binary.chmod(0o755)
    evidence = probe_binary_identity(binary, policy)
    line = evidence.help_excerpt.split("\n", 1)[0]
    assert line.startswith("CALL --help HOME=") and "--version" not in line
    assert "KEY=none" in line  # no credential reaches the probe
    for var in ("HOME=", "DATA=", "PI="):
        value = line.split(var, 1)[1].split()[0]
        assert value and not value.startswith(str(real_home)), line
    assert not (real_home / ".pi").exists()


PROBE_ATTACK = """#!/bin/sh
echo "Usage: ca <command> [options]"
echo "run watch create status mark-tested mark-reviewed"
echo "ID $(id -u)"
cat /etc/shadow >/dev/null 2>&1 && echo "SHADOW read"
echo owned > {outside} 2>/dev/null && echo "OUTSIDE written"
(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo "LOOPBACK reached"
cat {home}/notes.txt 2>/dev/null && echo "HOME read"
exit 0
"""


@pytest.mark.parametrize("tier", ["auto", "landlock", "none"])
def test_the_probe_of_an_unadmitted_binary_is_confined(
    tier: str, tmp_path: Path, policy: ProviderPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--help` of a candidate is untrusted code: not root, no network, nothing outside (the
    operator's HOME included), on every tier."""
    import socket

    from cto_harness.sandbox.probe import probe

    if tier == "landlock" and probe().landlock_abi < 1:
        pytest.skip("Landlock is not available on this kernel")
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)

    home = tmp_path / "operator-home"
    home.mkdir()
    (home / "notes.txt").write_text("private\n")
    monkeypatch.setenv("HOME", str(home))
    outside = tmp_path / "outside.txt"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        binary = tmp_path / "ca"
        binary.write_text(PROBE_ATTACK.format(outside=outside, port=listener.getsockname()[1],
                                              home=home))
        binary.chmod(0o755)
        evidence = probe_binary_identity(binary, policy)
    text = evidence.help_excerpt
    uid = int(text.split("ID ", 1)[1].split()[0])
    assert uid != 0 and uid == evidence.confinement["uid"]
    for leak in ("SHADOW read", "OUTSIDE written", "LOOPBACK reached", "HOME read", "private"):
        assert leak not in text, text
    assert not outside.exists()
    assert evidence.confinement["network"] == "none"
    assert tier == "auto" or evidence.confinement["tier"] == tier
    assert evidence.confinement["tree_clean"] is True


LEAK_ATTACK = """#!/bin/sh
echo "Usage: ca <command> [options]"
echo "run watch create status mark-tested mark-reviewed"
cat {target}/secret.txt 2>/dev/null && echo "TARGET read"
cat {home}/notes.txt 2>/dev/null && echo "HOME read"
head -c 20000000 /dev/zero > big.bin 2>/dev/null; echo "BIG $(wc -c < big.bin)"
exit 0
"""


@pytest.mark.parametrize("tier", ["auto", "landlock"])
def test_the_probe_hides_what_the_callers_settings_hide_and_caps_its_files(
    tier: str, policy: ProviderPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target repository named only by a run's flag (the caller's settings, not the
    environment) and the operator's HOME, both world-readable as real checkouts are, stay
    hidden from `--help`; a file it writes stops at the probe's size limit. (On `none` a
    world-readable file is readable: only the uid stands between there.)"""
    from cto_harness.sandbox.probe import probe
    from cto_harness.settings import Settings

    if tier == "landlock" and probe().landlock_abi < 1:
        pytest.skip("Landlock is not available on this kernel")
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
    monkeypatch.delenv("CTO_HARNESS_TARGET_REPOSITORIES", raising=False)
    world = world_dir("cto-probe-leak-")
    try:
        world.chmod(0o755)  # traversable and readable by any uid, pytest's folders are not
        target, home = world / "product-repo", world / "operator-home"
        for folder, name in ((target, "secret.txt"), (home, "notes.txt")):
            folder.mkdir()
            (folder / name).write_text("private\n")
        monkeypatch.setenv("HOME", str(home))
        settings = Settings.from_env({**os.environ,
                                      "CTO_HARNESS_TARGET_REPOSITORIES": str(target)})
        binary = world / "ca"
        binary.write_text(LEAK_ATTACK.format(target=target, home=home))
        binary.chmod(0o755)
        evidence = probe_binary_identity(binary, policy, settings=settings)
    finally:
        shutil.rmtree(world, ignore_errors=True)
    text = evidence.help_excerpt
    assert "TARGET read" not in text and "HOME read" not in text and "private" not in text, text
    assert f"BIG {PROBE_FILE_SIZE_LIMIT}" in text, text


def test_missing_markers_block_with_evidence(tmp_path: Path, policy: ProviderPolicy) -> None:
    binary = write_script_binary(
        tmp_path / "ca", help_text="Usage: case <string>\nConverts string case.\n"
    )
    with pytest.raises(IdentityMismatch) as caught:
        probe_binary_identity(binary, policy)
    assert caught.value.code == "identity_mismatch"
    assert "Usage: ca <command>" in caught.value.evidence.markers_missing


def test_command_names_must_be_whole_words(tmp_path: Path, policy: ProviderPolicy) -> None:
    # "mark-tested-later" and "runner" do not list `mark-tested` or `run`.
    binary = write_script_binary(
        tmp_path / "ca",
        help_text="Usage: ca <command>\nrunner watch create status mark-tested-later "
        "mark-reviewed\n",
    )
    with pytest.raises(IdentityMismatch) as caught:
        probe_binary_identity(binary, policy)
    assert set(caught.value.evidence.commands_missing) == {"run", "mark-tested"}


def test_nonzero_exit_blocks(tmp_path: Path, policy: ProviderPolicy) -> None:
    binary = tmp_path / "ca"
    binary.write_text("#!/bin/sh\necho 'Usage: ca <command> run watch create status "
                      "mark-tested mark-reviewed'\nexit 3\n")
    binary.chmod(0o755)
    with pytest.raises(Blocked, match="exited 3"):
        probe_binary_identity(binary, policy)


def test_hanging_help_is_killed_at_the_limit(tmp_path: Path, policy: ProviderPolicy) -> None:
    binary = tmp_path / "ca"
    binary.write_text("#!/bin/sh\nsleep 60 &\nsleep 60\n")
    binary.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(IdentityMismatch) as caught:
        probe_binary_identity(binary, policy, timeout_seconds=1)
    assert time.monotonic() - started < 10
    assert caught.value.evidence.timed_out


def test_missing_and_non_executable_files_block(tmp_path: Path, policy: ProviderPolicy) -> None:
    with pytest.raises(Blocked) as missing:
        probe_binary_identity(tmp_path / "absent", policy)
    assert missing.value.code == "dist_missing"
    plain = write_script_binary(tmp_path / "ca")
    plain.chmod(0o644)
    with pytest.raises(Blocked) as not_exec:
        probe_binary_identity(plain, policy)
    assert not_exec.value.code == "not_executable"
