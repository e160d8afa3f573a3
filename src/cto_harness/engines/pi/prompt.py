"""What pi is given: one prompt (the fixture's own task text with its limits) and, for an
admitted base URL, the `models.json` that routes the model provider there. The credential goes
in by variable name only (pi resolves a bare name from its environment); a value is never
written anywhere."""

from __future__ import annotations

import shlex
from typing import Any

from cto_harness.contracts import CaseSpec

# pi's built-in providers this engine points at a base URL, with the API each speaks.
APIS = {"anthropic": "anthropic-messages", "openai": "openai-completions"}


def render_prompt(spec: CaseSpec) -> str:
    """The task as pi reads it. It never starts with `@` or `-` (pi would read a file or a
    flag): it starts with the case's title."""
    lines = [f"Task: {spec.title}", "", spec.task.strip(), "",
             "You may change only these paths (globs, relative to the working directory): "
             + ", ".join(spec.allowed_paths) + "."]
    if spec.forbidden_actions:
        lines += ["", "Never do any of the following:"]
        lines += [f"- {action}" for action in spec.forbidden_actions]
    lines += ["", "The tests run with: " + shlex.join(spec.verification.command),
              "Work in the current directory. When you are done, say what you changed."]
    return "\n".join(lines) + "\n"


def model_config(provider: str, base_url: str | None, credential: str) -> dict[str, Any] | None:
    """pi's `models.json` for an admitted base URL (None: pi's own default endpoint)."""
    if base_url is None:
        return None
    entry: dict[str, Any] = {"baseUrl": base_url, "apiKey": credential}
    if provider in APIS:
        entry["api"] = APIS[provider]
    return {"providers": {provider: entry}}
