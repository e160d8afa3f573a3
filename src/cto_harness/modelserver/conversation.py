"""A model API request read into one neutral shape, whichever API it came in.

Both APIs carry the same agent conversation: a system prompt, the tools on offer, the first user
prompt, then alternating assistant turns (text and tool calls) and the tool results that answer
them. A request that does not have that shape is refused with `ConversationError` (the endpoint
answers HTTP 400): the scripted endpoint never guesses what a malformed conversation meant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["anthropic", "openai"]


class ConversationError(ValueError):
    """The request is not an agent conversation this endpoint can read."""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class AssistantTurn:
    text: str
    tool_calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class ToolResult:
    tool_call_id: str
    text: str
    is_error: bool = False


@dataclass(frozen=True)
class Conversation:
    api: Api
    model: str
    system: str
    prompt: str
    tools: tuple[str, ...]
    turns: tuple[AssistantTurn, ...] = ()
    # results[k] answers turns[k] (one entry per tool call of that turn, in order)
    results: tuple[tuple[ToolResult, ...], ...] = ()
    stream: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if not isinstance(block, dict):
                raise ConversationError(f"{where}: a content block is not an object")
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") == "image":
                parts.append("[image]")
        return "\n".join(parts)
    if content is None:
        return ""
    raise ConversationError(f"{where}: content is neither text nor a list of blocks")


def _require(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ConversationError("the request body is not a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ConversationError("the request names no model")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ConversationError("the request has no messages")
    return body


def parse_anthropic(raw: Any) -> Conversation:
    """A Messages API body (`POST /v1/messages`)."""
    body = _require(raw)
    system = _text_of(body.get("system"), "system")
    tools = tuple(str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict))
    messages = body["messages"]
    if not isinstance(messages[0], dict) or messages[0].get("role") != "user":
        raise ConversationError("the first message is not the user's prompt")
    prompt = _text_of(messages[0].get("content"), "messages[0]")
    turns: list[AssistantTurn] = []
    results: list[tuple[ToolResult, ...]] = []
    for index, message in enumerate(messages[1:], start=1):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ConversationError(f"{where} is not an object")
        role = message.get("role")
        expected = "assistant" if index % 2 == 1 else "user"
        if role != expected:
            raise ConversationError(f"{where} has role {role!r}, expected {expected!r}")
        content = message.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        if role == "assistant":
            texts, calls = [], []
            for block in blocks:
                if not isinstance(block, dict):
                    raise ConversationError(f"{where}: a content block is not an object")
                if block.get("type") == "text":
                    texts.append(str(block.get("text", "")))
                elif block.get("type") == "tool_use":
                    calls.append(ToolCall(str(block.get("id", "")), str(block.get("name", "")),
                                          dict(block.get("input") or {})))
            turns.append(AssistantTurn("".join(texts), tuple(calls)))
        else:
            answered = []
            for block in blocks:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    answered.append(ToolResult(
                        str(block.get("tool_use_id", "")),
                        _text_of(block.get("content"), where),
                        bool(block.get("is_error", False)),
                    ))
            results.append(tuple(answered))
    if len(results) != len(turns):
        raise ConversationError("the last assistant turn has no tool results after it")
    return Conversation(api="anthropic", model=body["model"], system=system, prompt=prompt,
                        tools=tools, turns=tuple(turns), results=tuple(results),
                        stream=bool(body.get("stream", False)))


def parse_openai(raw: Any) -> Conversation:
    """A Chat Completions body (`POST /v1/chat/completions`)."""
    body = _require(raw)
    tools = tuple(
        str((t.get("function") or {}).get("name"))
        for t in body.get("tools") or [] if isinstance(t, dict)
    )
    messages = list(body["messages"])
    system_parts = []
    while messages and isinstance(messages[0], dict) and \
            messages[0].get("role") in ("system", "developer"):
        system_parts.append(_text_of(messages.pop(0).get("content"), "system"))
    if not messages or not isinstance(messages[0], dict) or messages[0].get("role") != "user":
        raise ConversationError("the first non-system message is not the user's prompt")
    prompt = _text_of(messages[0].get("content"), "user prompt")
    turns: list[AssistantTurn] = []
    results: list[tuple[ToolResult, ...]] = []
    pending: list[ToolResult] | None = None
    for index, message in enumerate(messages[1:], start=1):
        if not isinstance(message, dict):
            raise ConversationError(f"messages[{index}] is not an object")
        role = message.get("role")
        if role == "assistant":
            if pending is not None:
                results.append(tuple(pending))
            calls = []
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except json.JSONDecodeError as exc:
                    raise ConversationError(f"messages[{index}]: tool arguments are not JSON") \
                        from exc
                calls.append(ToolCall(str(call.get("id", "")), str(function.get("name", "")),
                                      arguments if isinstance(arguments, dict) else {}))
            turns.append(AssistantTurn(_text_of(message.get("content"), "assistant"),
                                       tuple(calls)))
            pending = []
        elif role == "tool":
            if pending is None:
                raise ConversationError(f"messages[{index}]: a tool result before any call")
            pending.append(ToolResult(str(message.get("tool_call_id", "")),
                                      _text_of(message.get("content"), "tool result")))
        else:
            raise ConversationError(f"messages[{index}] has role {role!r} inside the agent loop")
    if pending is not None:
        results.append(tuple(pending))
    if len(results) != len(turns):
        raise ConversationError("the last assistant turn has no tool results after it")
    return Conversation(api="openai", model=body["model"], system="\n".join(system_parts),
                        prompt=prompt, tools=tools, turns=tuple(turns), results=tuple(results),
                        stream=bool(body.get("stream", False)))


def parse(api: Api, body: Any) -> Conversation:
    return parse_anthropic(body) if api == "anthropic" else parse_openai(body)
