"""Provider build and admission (DESIGN section 4): policy, distribution kinds, identity, store,
registry, build route. Nothing here is specific to one provider: the executable's name, where it
comes from, how it is recognised and what its probe needs are read from its policy.

What the run pipeline and the engines call:
- `load_policy(default_policy_path(harness_root, provider))` -> `ProviderPolicy`;
  `policy.admitted_model(provider, model, base_url)` -> `AdmittedModel | None`
- `lookup_admission(settings, binary, provider)` -> `AdmissionRecord | None` (re-hashes `binary`)
- `probe_binary_identity(binary, policy, timeout_seconds=30)` -> `IdentityEvidence`
  (raises `Blocked`: `identity_mismatch`, `not_executable`, `dist_missing`)
- `admission_summary(settings, provider)` -> dict, for health
"""

from cto_harness.providers.identity import IdentityEvidence, IdentityMismatch, probe_binary_identity
from cto_harness.providers.policy import (
    AdmittedModel,
    ProviderPolicy,
    default_policy_path,
    load_policy,
)
from cto_harness.providers.registry import (
    AdmissionRecord,
    admission_summary,
    find_admission,
    list_admissions,
    lookup_admission,
    record_admission,
)

__all__ = [
    "AdmissionRecord",
    "AdmittedModel",
    "IdentityEvidence",
    "IdentityMismatch",
    "ProviderPolicy",
    "admission_summary",
    "default_policy_path",
    "find_admission",
    "list_admissions",
    "load_policy",
    "lookup_admission",
    "probe_binary_identity",
    "record_admission",
]
