"""Case's inputs, generated per run (DESIGN section 6, step 3): the `.task.json`, its `.md` brief,
a private data dir (`config.json`, `projects.json`) and the agent dir (`models.json`).

The models below are our own mirror of Case's published task and projects schemas
(`../shared/case-task.schema.json`, `../shared/case-projects.schema.json`), strict like them
(unknown keys are an error), so that what we write is valid before Case ever reads it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cto_harness.contracts import CASE_ID_PATTERN, CaseSpec, StrictModel, matching

TaskStatus = Literal[
    "active", "implementing", "verifying", "reviewing", "evaluating", "closing", "pr-opened",
    "merged",
]


class AgentPhase(StrictModel):
    started: str | None = None
    completed: str | None = None
    status: Literal["pending", "running", "completed", "failed"] | None = None


class TaskAgents(StrictModel):
    orchestrator: AgentPhase | None = None
    implementer: AgentPhase | None = None
    verifier: AgentPhase | None = None
    reviewer: AgentPhase | None = None
    closer: AgentPhase | None = None


class RevisionCategory(StrictModel):
    category: str
    verdict: Literal["pass", "fail", "na"]
    detail: str


class RevisionRequest(StrictModel):
    source: Literal["verifier", "reviewer"]
    failedCategories: list[RevisionCategory]
    summary: str
    suggestedFocus: list[str]
    cycle: int = Field(ge=0)


class CaseTask(StrictModel):
    """Case's `.task.json` (title "Case Task"). We write only the fields a fresh task has."""

    id: Annotated[str, matching(CASE_ID_PATTERN, "task id must be a slug ([a-z0-9][a-z0-9-]*)")]
    status: TaskStatus
    created: str
    repo: str
    issue: str | None = None
    issueType: Literal["github", "linear", "freeform"] | None = None
    contractPath: str | None = None
    branch: str | None = None
    mode: Literal["attended", "unattended"] | None = None
    profile: Literal["tiny", "standard"] | None = None
    agents: TaskAgents | None = None
    tested: bool | None = None
    manualTested: bool | None = None
    prUrl: str | None = None
    prNumber: int | None = None
    fastTestCommand: str | None = None
    checkCommand: str | None = None
    checkBaseline: float | None = None
    checkTarget: float | None = None
    pendingRevision: RevisionRequest | None = None

    @field_validator("created")
    @classmethod
    def _date_time(cls, value: str) -> str:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True)


class ProjectCommands(BaseModel):
    # Case allows further named commands (any string value), like its schema does.
    model_config = ConfigDict(extra="allow")

    setup: str
    test: str
    build: str | None = None
    lint: str | None = None
    typecheck: str | None = None
    format: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _strings(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError("commands are strings")
        return value


class ProjectRepo(StrictModel):
    name: str
    type: Literal["app", "library"] | None = None
    path: str
    remote: str
    description: str
    language: Literal["typescript", "python", "go", "ruby", "php", "dotnet", "elixir", "kotlin"]
    packageManager: Literal[
        "pnpm", "npm", "yarn", "uv", "pip", "go", "bundler", "composer", "dotnet", "mix", "gradle"
    ]
    commands: ProjectCommands

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        # Case resolves a relative path against its own package root: only absolute is safe.
        if not Path(value).is_absolute():
            raise ValueError(f"the repo path must be absolute, got {value!r}")
        return value


class ProjectsManifest(StrictModel):
    repos: list[ProjectRepo] = Field(min_length=1)

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True)


def task_id(case_id: str, run_id: str) -> str:
    """`<case-id>-<8 hex>`: unique per run (Case resumes a task id it has seen in a repo)."""
    return f"{case_id}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def make_task(case_id: str, run_id: str, repo_name: str, created: str) -> CaseTask:
    return CaseTask(
        id=task_id(case_id, run_id), status="active", created=created, repo=repo_name,
        mode="unattended", issueType="freeform",
    )


def make_projects(spec: CaseSpec, workspace: Path, remote: Path) -> ProjectsManifest:
    return ProjectsManifest(repos=[ProjectRepo(
        name=spec.id,
        type="library",
        path=str(workspace.resolve()),
        remote=str(remote),
        description=spec.title,
        language="python",
        packageManager="pip",
        commands=ProjectCommands(setup="true", test=shlex.join(spec.verification.command)),
    )])


def render_brief(spec: CaseSpec, task: CaseTask) -> str:
    """The companion `.md`: only what the task contract allows (DESIGN section 5), no path."""
    bullet = "\n".join
    lines = [
        f"# {spec.title}",
        "",
        f"Task `{task.id}` for the repository `{task.repo}` (your working directory).",
        "",
        "## Task",
        "",
        spec.task.strip(),
        "",
        "## Allowed paths",
        "",
        "Change only files matching these paths (relative to the repository root):",
        "",
        bullet(f"- `{p}`" for p in spec.allowed_paths),
        "",
        "## Forbidden actions",
        "",
        bullet(f"- {a}" for a in spec.forbidden_actions) or "- none listed",
        "- any `gh` call other than `gh pr create`, `gh pr view` and `gh pr list`",
        "- `git push` to any remote but `origin`",
        "",
        "## Delivering the change",
        "",
        "Everything stays on this machine. `origin` is a local bare repository: commit on a",
        "branch, push it to `origin`, and open the pull request with `gh pr create` (base `main`);",
        "it is recorded locally and gets a URL under `https://pr.invalid/`, a host that never",
        "resolves. `gh pr view` and `gh pr list` read those records. Any other `gh` call is",
        "refused and recorded as a forbidden action.",
        "",
        "## Verification",
        "",
        "The harness runs this command itself, in a copy with the original tests laid back:",
        "",
        f"    {shlex.join(spec.verification.command)}",
        "",
        "## Evidence expected",
        "",
        f"- at least {spec.evidence.min_tests} tests run and pass",
    ]
    if spec.evidence.changed_paths:
        lines.append("- changes to: " + ", ".join(f"`{p}`" for p in spec.evidence.changed_paths))
    lines.append("")
    return "\n".join(lines)


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
