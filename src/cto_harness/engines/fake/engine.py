"""The built-in deterministic engine: the default lane, and every Case run's same-run baseline."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from cto_harness.clock import iso, utc_now
from cto_harness.contracts import ProviderInfo, TaskContract
from cto_harness.engines.base import (
    Admission,
    Engine,
    EngineSettings,
    Launch,
    Outcome,
    RunContext,
    provider_outcome_of,
)
from cto_harness.engines.case.events import map_events, typed
from cto_harness.errors import HarnessFault
from cto_harness.fsutil import atomic_write_bytes, atomic_write_json, read_jsonl, sha256_file
from cto_harness.git import git_env
from cto_harness.sandbox.process import ProcessResult
from cto_harness.settings import PositiveWhole, SettingsConfigDict
from cto_harness.tree import read_file

AGENT_SOURCE = Path(__file__).with_name("agent.py")
MAX_EVENT_LOG_BYTES = 32 * 1024 * 1024
MAX_EVENT_LOG_BYTES = 32 * 1024 * 1024


class FakeSettings(EngineSettings):
    """`CTO_HARNESS_FAKE_*`: the fake agent's time limit."""

    model_config = SettingsConfigDict(env_prefix="CTO_HARNESS_FAKE_")

    timeout_seconds: PositiveWhole = 900


class FakeEngine(Engine):
    name = "fake"
    settings_model = FakeSettings

    @staticmethod
    def _private(ctx: RunContext) -> Path:
        return ctx.private / "fake"

    def admit(self, ctx: RunContext) -> Admission:
        # The fake ships with the harness: admitted by construction, recorded as `builtin`. The
        # bytes that run are a private copy, hashed here and re-checked before launch.
        private = self._private(ctx)
        private.mkdir(parents=True, exist_ok=True)
        agent = private / "fake_agent.py"
        shutil.copy2(AGENT_SOURCE, agent)
        provider = ProviderInfo(name="fake", path=str(AGENT_SOURCE), executed_path=str(agent),
                                sha256=sha256_file(agent), provenance_level="builtin")
        return Admission(provider=provider, status="admitted")

    def prepare(self, ctx: RunContext, admission: Admission) -> Launch:
        private = self._private(ctx)
        contract = TaskContract.from_case(ctx.case.spec)
        task_file = ctx.task_dir / "task.json"
        atomic_write_json(task_file, contract.model_dump(mode="json"))
        given = private / "task.json"
        shutil.copy2(task_file, given)

        agent = Path(admission.provider.executed_path or "")
        if sha256_file(agent) != admission.provider.sha256:
            raise HarnessFault("the fake agent changed between hashing and launch")

        spec = ctx.case.spec.fake
        plan: dict[str, object] = {"delete": spec.delete, "commit": spec.commit}
        overlay = ctx.case.overlay_dir()
        if overlay.is_dir():
            shutil.copytree(overlay, private / "solution", symlinks=True)
            plan["overlay"] = str(private / "solution")
        if spec.script:
            shutil.copy2(ctx.case.directory / spec.script, private / "script.py")
            plan["script"] = str(private / "script.py")
        atomic_write_json(private / "plan.json", plan)

        home = ctx.private / "home"
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        env = git_env(home) | {
            "TMPDIR": str(home / "tmp"),
            "LANG": "C.UTF-8",
            "CTO_FAKE_PLAN": str(private / "plan.json"),
            "CTO_FAKE_EVENTS": str(private / "events.jsonl"),
        }
        argv = [sys.executable, "-I", "-S", str(agent), "run", "--task", str(given),
                "--mode", "unattended"]
        return Launch(argv=argv, env=env, cwd=ctx.workspace,
                      timeout_seconds=FakeSettings.of(ctx).timeout_seconds)

    def collect(self, ctx: RunContext, admission: Admission, result: ProcessResult) -> Outcome:
        # The provider can write here: read without following any link (to a key, a target),
        # never a FIFO or device, and no more than the cap, whatever it planted.
        data = read_file(ctx.private, "fake/events.jsonl", MAX_EVENT_LOG_BYTES)
        if data is None:
            planted = os.path.lexists(self._private(ctx) / "events.jsonl")
            return Outcome(claims={"event_log": "refused: not a regular file (a link, FIFO or "
                                   "device planted by the provider)" if planted else None})
        atomic_write_bytes(ctx.backend / "fake-events.jsonl", data)
        rows, bad = read_jsonl(ctx.backend / "fake-events.jsonl")
        mapped = map_events(rows, fallback_ts=iso(utc_now()))
        events, spans = typed(mapped)
        return Outcome(
            events=events,
            spans=spans,
            claims={
                "event_log": "backend/fake-events.jsonl",
                "pipeline_end": mapped.pipeline_end,
                "phase_results": mapped.phase_results,
                "unreadable_event_lines": bad,
            },
            provider_outcome=provider_outcome_of(events, "backend/fake-events.jsonl"),
        )
