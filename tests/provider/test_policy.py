"""The provider policy: the shipped file, strict parsing, model admission."""

from __future__ import annotations

from pathlib import Path

import pytest

from cto_harness.errors import UsageError
from cto_harness.providers.policy import (
    ProviderPolicy,
    default_policy_path,
    load_policy,
    normalize_source_url,
)
from cto_harness.providers.source import SourceDistribution
from standin_helpers import POLICY_PATH, REPO_ROOT, run_provider_cli

PIN = "7959ac917cdeb0983b4aaa20bb9f42021747fed8"
SNAPSHOT_PIN = "30b1fa1285a9d8f5a05f81377bcf95fbe250642c"


def test_shipped_policy_names_the_pin_commands_and_markers() -> None:
    assert default_policy_path(REPO_ROOT / "harness") == POLICY_PATH
    policy = load_policy(POLICY_PATH)
    assert (policy.name, policy.binary) == ("case", "ca")
    assert policy.source_url == "https://github.com/workos/case.git"
    assert policy.pin == PIN
    source = policy.distribution
    assert isinstance(source, SourceDistribution) and source.kind == "source"
    assert source.commands == [["bun", "install"], ["bun", "run", "build:binary"]]
    assert source.artifact == "dist/ca"
    assert source.identity.model_dump() == {
        "manifest": "package.json", "fields": {"name": "case", "private": True}, "bin": "ca",
    }
    assert "Usage: ca <command>" in policy.binary_identity.markers
    assert policy.binary_identity.private_dirs == ["CASE_DATA_DIR", "PI_CODING_AGENT_DIR"]
    assert {"run", "watch", "create", "status", "mark-tested", "mark-reviewed"} <= set(
        policy.binary_identity.commands
    )
    # No live model ships (an operator admits those); only the harness's own deterministic
    # endpoints, which every report labels as such.
    assert [(m.model, m.endpoint) for m in policy.models] == [
        ("claude-sonnet-4-6", "scripted"), ("claude-sonnet-4-6", "replay")]
    assert all(m.base_url is None for m in policy.models)
    (accepted,) = policy.accepted_pins
    assert accepted.commit == SNAPSHOT_PIN and "7959ac9" in accepted.reason


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_PATH.read_text() + text)
    return path


def test_unknown_key_is_a_usage_error_naming_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, '\n[distribution.extra]\nflag = true\n')
    with pytest.raises(UsageError) as caught:
        load_policy(path)
    assert str(path) in str(caught.value)
    assert "distribution.extra" in str(caught.value)


def test_an_unknown_distribution_kind_names_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_PATH.read_text().replace('kind = "source"', 'kind = "tarball"'))
    with pytest.raises(UsageError, match=r"unknown distribution kind 'tarball' \(known: npm, source\)"):
        load_policy(path)


def test_a_provider_name_cannot_leave_the_providers_folder() -> None:
    with pytest.raises(UsageError, match="invalid provider name"):
        default_policy_path(REPO_ROOT / "harness", "../case")


def test_bad_value_is_named_with_the_value(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_PATH.read_text().replace(PIN, "main"))
    with pytest.raises(UsageError) as caught:
        load_policy(path)
    assert "commit" in str(caught.value) and "'main'" in str(caught.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[[models]]\nprovider = 'openai'\n", "models.2.model"),
        ("[[models]]\nprovider = 'openai'\nmodel = 'm'\nbase_url = 'ftp://x'\n", "base_url"),
        ("this is not toml", "not valid TOML"),
        ("[[accepted_pins]]\ncommit = '" + "a" * 40 + "'\n", "accepted_pins.1.reason"),
        ("[[accepted_pins]]\ncommit = '" + "a" * 40 + "'\nreason = '  '\n", "reason"),
        ("[[accepted_pins]]\ncommit = 'abc'\nreason = 'r'\n", "accepted_pins.1.commit"),
        ("[[accepted_pins]]\ncommit = '" + SNAPSHOT_PIN + "'\nreason = 'again'\n",
         "pin listed twice"),
        ("[[models]]\nprovider = 'anthropic'\nmodel = 'm'\nendpoint = 'scripted'\n"
         "base_url = 'http://127.0.0.1:1'\n", "started by the harness"),
        ("[[models]]\nprovider = 'anthropic'\nmodel = 'm'\nendpoint = 'mock'\n", "endpoint"),
    ],
)
def test_malformed_policies_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_policy(_write(tmp_path, "\n" + text))
    assert fragment in str(caught.value)


def test_empty_build_command_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_PATH.read_text().replace('["bun", "install"]', "[]"))
    with pytest.raises(UsageError, match="non-empty argv"):
        load_policy(path)


def test_missing_policy_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read provider policy"):
        load_policy(tmp_path / "nope.toml")


def test_cli_with_malformed_policy_exits_64_and_writes_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path, "\nsurprise = 1\n")
    home = tmp_path / "home"
    result = run_provider_cli(
        home, "build", "--source", str(tmp_path), "--policy", str(path)
    )
    assert result.returncode == 64, result.stderr
    assert str(path) in result.stderr and "surprise" in result.stderr
    assert not (home / "providers").exists() and not (home / "builds").exists()


def test_admitted_model_matches_exactly() -> None:
    policy = ProviderPolicy.model_validate({
        **load_policy(POLICY_PATH).model_dump(),
        "models": [
            {"provider": "anthropic", "model": "claude-sonnet-4-6"},
            {"provider": "openai", "model": "gpt-x", "base_url": "http://127.0.0.1:8080/v1"},
        ],
    })
    assert policy.admitted_model("anthropic", "claude-sonnet-4-6", None) is not None
    assert policy.admitted_model("anthropic", "claude-sonnet-4-6", "http://evil") is None
    assert policy.admitted_model("anthropic", "claude-opus", None) is None
    assert policy.admitted_model("openai", "gpt-x", None) is None
    entry = policy.admitted_model("openai", "gpt-x", "http://127.0.0.1:8080/v1/")
    assert entry is not None and entry.base_url == "http://127.0.0.1:8080/v1"
    assert policy.admitted_model(None, "gpt-x", None) is None
    shipped = load_policy(POLICY_PATH)
    assert shipped.admitted_model("anthropic", "claude-sonnet-4-6") is None  # live: none ships
    assert shipped.admitted_model("anthropic", "claude-sonnet-4-6", endpoint="scripted")
    assert shipped.admitted_model("anthropic", "claude-sonnet-4-6", endpoint="replay")
    # The kind is part of the match: a live entry never admits a scripted run, nor the reverse.
    assert policy.admitted_model("anthropic", "claude-sonnet-4-6", endpoint="scripted") is None


def test_recorded_pins() -> None:
    policy = load_policy(POLICY_PATH)
    default = policy.recorded_pin(None)
    assert default is not None and (default.commit, default.kind) == (PIN, "default")
    assert policy.recorded_pin(PIN) == default
    accepted = policy.recorded_pin(SNAPSHOT_PIN)
    assert accepted is not None and accepted.kind == "accepted" and accepted.reason
    assert policy.recorded_pin("1" * 40) is None


def test_source_urls_compare_by_repository() -> None:
    policy = load_policy(POLICY_PATH)
    assert normalize_source_url("https://GitHub.com/workos/case/") == normalize_source_url(
        "https://github.com/workos/case.git"
    )
    assert policy.source_url_matches("https://github.com/workos/case")
    assert not policy.source_url_matches("https://github.com/workos/case-impostor.git")
    assert not policy.source_url_matches(None)


def test_empty_marker_list_is_refused_by_the_cli(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY_PATH.read_text().replace(
        'markers = ["Usage: ca <command>"]', "markers = []"))
    built = run_provider_cli(tmp_path / "home", "build", "--source", str(tmp_path),
                             "--policy", str(policy))
    assert built.returncode == 64 and "binary_identity.markers" in built.stderr
