"""The built-in deterministic engine: the default lane, and every Case run's same-run baseline."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from cto_harness.contracts import ProviderInfo, TaskContract
from cto_harness.core.events import iso, utc_now
from cto_harness.core.tree import read_file
from cto_harness.core.workspace import git_env
from cto_harness.engines import register_engine
from cto_harness.engines.base import Engine, Launch, ProviderOutcome, RunContext
from cto_harness.engines.case.events import map_events, read_jsonl
from cto_harness.errors import HarnessError
from cto_harness.fsutil import atomic_write_bytes, atomic_write_json, sha256_file
from cto_harness.sandbox.process import ProcessResult

AGENT_SOURCE = Path(__file__).with_name("agent.py")
MAX_EVENT_LOG_BYTES = 32 * 1024 * 1024


@register_engine
class FakeEngine(Engine):
    name = "fake"

    def admit(self, ctx: RunContext) -> None:
        # The fake ships with the harness: admitted by construction, recorded as `builtin`.
        ctx.provider = ProviderInfo(
            name="fake",
            path=str(AGENT_SOURCE),
            sha256=sha256_file(AGENT_SOURCE),
            provenance_level="builtin",
        )
        ctx.admission_status = "admitted"

    def prepare(self, ctx: RunContext) -> Launch:
        private = ctx.private / "fake"
        private.mkdir(parents=True, exist_ok=True)
        contract = TaskContract.from_case(ctx.case.spec)
        task_file = ctx.task_dir / "task.json"
        atomic_write_json(task_file, contract.model_dump(mode="json"))
        ctx.task_files = [task_file]
        given = private / "task.json"
        shutil.copy2(task_file, given)

        # Run the hashed bytes: copy the agent, re-hash the copy, refuse a difference.
        agent = private / "fake_agent.py"
        shutil.copy2(AGENT_SOURCE, agent)
        if sha256_file(agent) != ctx.provider.sha256:
            raise HarnessError("the fake agent changed between hashing and launch")
        ctx.provider.executed_path = str(agent)

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
                      timeout_seconds=ctx.settings.case_timeout_seconds)

    def collect(self, ctx: RunContext, result: ProcessResult) -> ProviderOutcome:
        # The provider can write here: read without following any link (to a key, a target),
        # never a FIFO or device, and no more than the cap, whatever it planted.
        data = read_file(ctx.private, "fake/events.jsonl", MAX_EVENT_LOG_BYTES)
        if data is None:
            planted = os.path.lexists(ctx.private / "fake" / "events.jsonl")
            return ProviderOutcome(claims={"event_log": "refused: not a regular file (a link, "
                                           "FIFO or device planted by the provider)"
                                           if planted else None})
        atomic_write_bytes(ctx.backend / "fake-events.jsonl", data)
        rows, bad = read_jsonl(ctx.backend / "fake-events.jsonl")
        mapped = map_events(rows, fallback_ts=iso(utc_now()))
        return ProviderOutcome(
            events=mapped.events,
            spans=mapped.spans,
            claims={
                "event_log": "backend/fake-events.jsonl",
                "pipeline_end": mapped.pipeline_end,
                "phase_results": mapped.phase_results,
                "unreadable_event_lines": bad,
            },
        )
