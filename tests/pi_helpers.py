"""pi test helpers: the pi policy, and what the session fixture `admitted_pi`
(tests/pi/conftest.py) yields after admitting pi once through the real npm route."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cto_harness.providers.npm import NpmDistribution
from cto_harness.providers.policy import default_policy_path, load_policy
from cto_harness.providers.report import ProviderReport

REPO_ROOT = Path(__file__).resolve().parents[1]
PI_POLICY = default_policy_path(REPO_ROOT / "harness", "pi")


@dataclass(frozen=True)
class AdmittedPi:
    home: Path
    report: ProviderReport

    @property
    def sha256(self) -> str:
        return self.report.artifact.sha256

    @property
    def tarball(self) -> Path:
        """The verified tarball the admission installed (kept in its build folder)."""
        return Path(self.report.build_dir or "") / "package.tgz"


def pi_spec() -> NpmDistribution:
    distribution = load_policy(PI_POLICY).distribution
    assert isinstance(distribution, NpmDistribution)
    return distribution
