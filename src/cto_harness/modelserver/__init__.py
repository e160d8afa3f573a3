"""A deterministic model endpoint on loopback (scripted, replay, record) for driving real
provider binaries offline: `cto-harness model serve`, or `ModelEndpoint` started by a run."""

from cto_harness.modelserver.cassette import Cassette, CassetteError, request_digest
from cto_harness.modelserver.scripts import ScriptError, ScriptSet
from cto_harness.modelserver.server import EndpointConfig, ModelEndpoint

__all__ = [
    "Cassette",
    "CassetteError",
    "EndpointConfig",
    "ModelEndpoint",
    "ScriptError",
    "ScriptSet",
    "request_digest",
]
