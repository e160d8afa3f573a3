"""Scripts for the scripted model endpoint: data files, one per agent role, no code per role.

A *script set* is a folder of TOML files (`harness/model-scripts/<case>/<set>/<role>.toml`). Each
file says how to recognise its role (a regular expression searched in the request's system
prompt) and lists the steps the "model" takes: a tool call (with optional text before it) or a
final answer. Example:

    role = "implementer"
    system_prompt_pattern = '(?m)^# Implementer\\b'

    [prompt_captures]                      # read from the first user message
    task_md = '\\*\\*Task file\\*\\*: `([^`]+)`'

    [[steps]]
    tool = "bash"
    input = { command = "git rev-parse HEAD" }
    capture = { commit = '([0-9a-f]{40})' }            # read from this step's tool result
    on_result = [{ matches = 'fatal', goto = "give-up" }]

    [[steps]]
    final = true
    text = 'Done. <<<AGENT_RESULT {"commit":"{{commit}}"} AGENT_RESULT>>>'

Which step answers a request is worked out from the request alone (so the endpoint holds no state
and a replay gives the same answers): start at the first step and walk the conversation's earlier
assistant turns, one step each, taking a step's `on_result` jump when its pattern matches that
turn's tool result. A conversation that does not follow the script, a tool the request does not
offer, or a placeholder nothing captured is an error, never a guess.

A set may hold a `set.toml` with a `description` and `extends = "<sibling set>"`: the sibling's
role scripts are used for every role this folder does not script itself (a hostile variant then
only holds the one role it changes).

Placeholders `{{name}}` take captured values: shell-quoted inside a `bash` command, JSON-escaped
inside text (results are JSON), verbatim in other tool inputs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from cto_harness.contracts import StrictModel
from cto_harness.modelserver.conversation import Conversation, ToolCall
from cto_harness.modelserver.replies import Reply, estimate_tokens

_PLACEHOLDER = re.compile(r"\{\{([a-z][a-z0-9_]*)\}\}")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class ScriptError(ValueError):
    """The script cannot answer this request (the endpoint answers HTTP 400 and logs why)."""


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {value!r} ({exc})") from None
    return value


class Jump(StrictModel):
    matches: str = Field(description="searched in the step's tool result text")
    goto: str = Field(description="the label of the step to continue with")

    @field_validator("matches")
    @classmethod
    def _matches(cls, value: str) -> str:
        return _regex(value)


class Step(StrictModel):
    label: str | None = None
    text: str = ""
    tool: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    final: bool = False
    capture: dict[str, str] = Field(default_factory=dict)
    on_result: list[Jump] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> Step:
        if self.final == (self.tool is not None):
            raise ValueError("a step is either a tool call (`tool`) or `final = true`")
        if self.final and (self.capture or self.on_result or self.input):
            raise ValueError("a final step has only `text`")
        if self.final and not self.text.strip():
            raise ValueError("a final step needs its `text` (the answer)")
        for name, pattern in self.capture.items():
            if not _NAME.fullmatch(name):
                raise ValueError(f"capture name {name!r} is not [a-z][a-z0-9_]*")
            if re.compile(_regex(pattern)).groups < 1:
                raise ValueError(f"capture {name!r} needs a group in its pattern")
        return self


class SetFile(StrictModel):
    """`set.toml`: what the set is for, and the sibling set it extends."""

    description: str = ""
    extends: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]*$")


class RoleScript(StrictModel):
    role: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    description: str = ""
    system_prompt_pattern: str
    prompt_captures: dict[str, str] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    @field_validator("system_prompt_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _regex(value)

    @model_validator(mode="after")
    def _labels(self) -> RoleScript:
        labels = [s.label for s in self.steps if s.label]
        if len(labels) != len(set(labels)):
            raise ValueError("step labels must be unique")
        for step in self.steps:
            for jump in step.on_result:
                if jump.goto not in labels:
                    raise ValueError(f"jump to unknown label {jump.goto!r}")
        if not any(s.final for s in self.steps):
            raise ValueError("a script needs a final step")
        for name, pattern in self.prompt_captures.items():
            if not _NAME.fullmatch(name) or re.compile(_regex(pattern)).groups < 1:
                raise ValueError(f"prompt capture {name!r} needs a name and a group")
        return self

    def index_of(self, label: str) -> int:
        return next(i for i, s in enumerate(self.steps) if s.label == label)


@dataclass(frozen=True)
class Answer:
    reply: Reply
    role: str
    step: str


def _token(seed: str, length: int = 24) -> str:
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def _fill(value: Any, captured: dict[str, str], *, shell: bool, json_text: bool,
          where: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, captured, shell=shell and k == "command", json_text=json_text,
                         where=where) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, captured, shell=shell, json_text=json_text, where=where) for v in value]
    if not isinstance(value, str):
        return value

    def put(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in captured:
            raise ScriptError(f"{where} uses {{{{{name}}}}} but nothing captured it")
        text = captured[name]
        if shell:
            return shlex.quote(text)
        if json_text:
            return json.dumps(text)[1:-1]
        return text

    return _PLACEHOLDER.sub(put, value)


def _toml(path: Path) -> tuple[bytes, dict[str, Any]]:
    raw = path.read_bytes()
    try:
        return raw, tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScriptError(f"invalid TOML in {path}: {exc}") from None


@dataclass(frozen=True)
class ScriptSet:
    name: str
    directory: Path
    scripts: tuple[RoleScript, ...]
    digest: str
    description: str = ""
    files: tuple[str, ...] = ()

    @classmethod
    def load(cls, directory: Path, *, _seen: tuple[Path, ...] = ()) -> ScriptSet:
        """Every `<role>.toml` in `directory` (plus an extended set's other roles); a malformed
        file is a `ScriptError` naming it."""
        directory = directory.absolute()
        if directory in _seen:
            raise ScriptError(f"script sets extend each other in a loop: {directory}")
        if not directory.is_dir():
            raise ScriptError(f"no script set at {directory}")
        meta = SetFile()
        digest = hashlib.sha256()
        if (directory / "set.toml").is_file():
            raw, data = _toml(directory / "set.toml")
            digest.update(b"set.toml\0" + hashlib.sha256(raw).digest())
            try:
                meta = SetFile.model_validate(data)
            except ValidationError as exc:
                raise ScriptError(f"invalid {directory / 'set.toml'}: {exc}") from None
        scripts: dict[str, RoleScript] = {}
        files: dict[str, str] = {}  # role -> the file it came from
        for path in sorted(p for p in directory.glob("*.toml") if p.is_file()):
            if path.name == "set.toml":
                continue
            raw, data = _toml(path)
            digest.update(path.name.encode() + b"\0" + hashlib.sha256(raw).digest())
            try:
                script = RoleScript.model_validate(data)
            except ValidationError as exc:
                raise ScriptError(f"invalid role script {path}: {exc}") from None
            if script.role in scripts:
                raise ScriptError(f"role {script.role!r} is scripted twice in {directory}")
            scripts[script.role] = script
            files[script.role] = f"{directory.name}/{path.name}"
        if meta.extends:
            base = cls.load(directory.parent / meta.extends, _seen=(*_seen, directory))
            digest.update(b"extends\0" + base.digest.encode())
            for script, source in zip(base.scripts, base.files, strict=True):
                if script.role not in scripts:
                    scripts[script.role], files[script.role] = script, source
        if not scripts:
            raise ScriptError(f"no role scripts (<role>.toml) in {directory}")
        roles = sorted(scripts)
        return cls(directory.name, directory, tuple(scripts[r] for r in roles),
                   digest.hexdigest(), meta.description, tuple(files[r] for r in roles))

    def role_for(self, system: str) -> RoleScript:
        found = [s for s in self.scripts if re.search(s.system_prompt_pattern, system)]
        if len(found) != 1:
            first = next((ln.strip() for ln in system.splitlines() if ln.strip()), "")[:120]
            what = "no role script" if not found else f"{len(found)} role scripts"
            raise ScriptError(f"{what} of set {self.name!r} recognise this system prompt "
                              f"(first line: {first!r})")
        return found[0]

    def answer(self, conversation: Conversation) -> Answer:
        script = self.role_for(conversation.system)
        captured: dict[str, str] = {}
        for name, pattern in script.prompt_captures.items():
            if match := re.search(pattern, conversation.prompt):
                captured[name] = match.group(1)
        position = 0
        for turn_number, turn in enumerate(conversation.turns):
            if position >= len(script.steps) or script.steps[position].final:
                raise ScriptError(f"{script.role}: the conversation goes on after the script's "
                                  f"final answer (turn {turn_number})")
            step = script.steps[position]
            called = [c.name for c in turn.tool_calls]
            if called != [step.tool]:
                raise ScriptError(
                    f"{script.role}: turn {turn_number} called {called}, but step "
                    f"{step.label or position} of the script calls {step.tool!r}: this "
                    f"conversation did not come from this script")
            output = "\n".join(r.text for r in conversation.results[turn_number])
            for name, pattern in step.capture.items():
                if match := re.search(pattern, output):
                    captured[name] = match.group(1)
            jump = next((j for j in step.on_result if re.search(j.matches, output)), None)
            position = script.index_of(jump.goto) if jump else position + 1
        if position >= len(script.steps):
            raise ScriptError(f"{script.role}: the script has no step after turn "
                              f"{len(conversation.turns)}")
        step = script.steps[position]
        where = f"{self.name}/{script.role} step {step.label or position}"
        seed = f"{self.name}/{script.role}/{position}/{len(conversation.turns)}"
        text = _fill(step.text, captured, shell=False, json_text=True, where=where)
        calls: tuple[ToolCall, ...] = ()
        if step.tool is not None:
            if step.tool not in conversation.tools:
                raise ScriptError(f"{where} calls tool {step.tool!r}, which this request does "
                                  f"not offer (offered: {', '.join(conversation.tools) or 'none'})")
            tool_input = _fill(step.input, captured, shell=step.tool == "bash",
                               json_text=False, where=where)
            calls = (ToolCall(f"toolu_{_token(seed)}", step.tool, tool_input),)
        reply = Reply(text=text, tool_calls=calls, message_id=f"msg_{_token('m' + seed)}",
                      input_tokens=estimate_tokens(conversation.system + conversation.prompt))
        return Answer(reply, script.role, str(step.label or position))
