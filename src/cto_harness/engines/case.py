"""The WorkOS Case engine (`ca`). Stage 2 only; every gate fails closed with a named blocker."""

from __future__ import annotations

from pathlib import Path

from cto_harness.contracts import ProviderInfo
from cto_harness.engines import register_engine
from cto_harness.engines.base import Engine, Launch, ProviderOutcome, RunContext
from cto_harness.errors import Blocked
from cto_harness.process import ProcessResult


@register_engine
class CaseEngine(Engine):
    name = "case"
    needs_baseline = True

    def stage(self, settings):  # type: ignore[no-untyped-def]
        return settings.case_stage or "unset"

    def admit(self, ctx: RunContext) -> None:
        settings = ctx.settings
        ctx.provider = ProviderInfo(name="case", path=settings.case_bin)
        if settings.allow_case != "1":
            raise Blocked(
                "engine_not_allowed", "--engine case needs CTO_HARNESS_ALLOW_CASE=1"
            )
        if settings.case_stage != "2":
            raise Blocked(
                "stage_not_authorized",
                f"only Stage 2 is authorized (CTO_HARNESS_CASE_STAGE=2), "
                f"got {settings.case_stage!r}",
            )
        if not settings.case_bin:
            raise Blocked(
                "provider_unavailable",
                "CTO_HARNESS_CASE_BIN is not set: no Case provider is configured",
                marker="provider-unavailable.txt",
            )
        binary = Path(settings.case_bin)
        if not binary.is_file():
            raise Blocked(
                "provider_unavailable",
                f"CTO_HARNESS_CASE_BIN names no file: {binary}",
                marker="provider-unavailable.txt",
            )
        raise Blocked(
            "provider_not_admitted",
            f"no admission record for {binary}",
            marker="provider-not-admitted.txt",
        )

    def prepare(self, ctx: RunContext) -> Launch:
        raise Blocked("provider_not_admitted", "the Case launch is not available")

    def collect(self, ctx: RunContext, result: ProcessResult) -> ProviderOutcome:
        return ProviderOutcome()
