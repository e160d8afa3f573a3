"""One model reply (text, then tool calls) written out as each API writes it.

Streaming follows the wire format of the real APIs event for event:

- Anthropic Messages: `message_start`, then per content block `content_block_start`,
  `content_block_delta` (`text_delta`, or `input_json_delta` for a tool's input, in pieces),
  `content_block_stop`; then `message_delta` (with `stop_reason` and usage) and `message_stop`.
  A `ping` follows `message_start`, as the real API sends one.
- OpenAI Chat Completions: `chat.completion.chunk` objects (role first, content deltas, tool call
  deltas with the arguments in pieces, a last chunk with `finish_reason`, a usage chunk when asked
  for), then `data: [DONE]`.

Token counts are an estimate (about four characters a token) so that clients that read usage
have numbers; nothing depends on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from cto_harness.modelserver.conversation import ToolCall

StopReason = Literal["end_turn", "tool_use"]
_TEXT_PIECE = 64
_JSON_PIECE = 48


@dataclass(frozen=True)
class Reply:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    message_id: str = "msg_cto_harness"
    input_tokens: int = 0

    @property
    def stop_reason(self) -> StopReason:
        return "tool_use" if self.tool_calls else "end_turn"

    @property
    def output_tokens(self) -> int:
        size = len(self.text) + sum(len(json.dumps(c.input)) for c in self.tool_calls)
        return max(1, size // 4)


@dataclass
class Exchange:
    """What the endpoint did for one request, for its log (never a credential)."""

    status: int = 200
    role: str | None = None
    step: str | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


# --- Anthropic Messages ------------------------------------------------------------------------


def _anthropic_content(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.input})
    return blocks


def anthropic_message(reply: Reply, model: str) -> dict[str, Any]:
    """The non-streaming response body."""
    return {
        "id": reply.message_id, "type": "message", "role": "assistant", "model": model,
        "content": _anthropic_content(reply), "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def anthropic_stream(reply: Reply, model: str) -> Iterator[bytes]:
    return stream_anthropic_message(anthropic_message(reply, model))


def stream_anthropic_message(message: dict[str, Any]) -> Iterator[bytes]:
    """A complete Messages API message, streamed as the API streams it (any block types)."""
    usage = dict(message.get("usage") or {})
    yield _sse("message_start", {"type": "message_start", "message": {
        **{k: v for k, v in message.items() if k not in ("content", "stop_reason", "usage")},
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }})
    yield _sse("ping", {"type": "ping"})
    for index, block in enumerate(message.get("content") or []):
        kind = block.get("type")

        def delta(body: dict[str, Any], i: int = index) -> bytes:
            return _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                "delta": body})

        if kind == "text":
            yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "text", "text": ""}})
            for piece in _pieces(block.get("text", ""), _TEXT_PIECE):
                yield delta({"type": "text_delta", "text": piece})
        elif kind == "thinking":
            yield _sse("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            for piece in _pieces(block.get("thinking", ""), _TEXT_PIECE):
                yield delta({"type": "thinking_delta", "thinking": piece})
            if block.get("signature"):
                yield delta({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "tool_use":
            yield _sse("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": block.get("id"),
                                  "name": block.get("name"), "input": {}}})
            arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
            for piece in ["", *_pieces(arguments, _JSON_PIECE)]:
                yield delta({"type": "input_json_delta", "partial_json": piece})
        else:  # redacted_thinking and anything newer: whole, in the start event
            yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": block})
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _sse("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message.get("stop_reason"),
                  "stop_sequence": message.get("stop_sequence")},
        "usage": {"output_tokens": usage.get("output_tokens", 1)},
    })
    yield _sse("message_stop", {"type": "message_stop"})


def sse_events(text: str) -> Iterator[tuple[str | None, str]]:
    """(event name, data) for each event of a server-sent-events body."""
    for chunk in text.replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in chunk.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            yield event, "\n".join(data)


def assemble_anthropic_stream(text: str) -> dict[str, Any]:
    """The message a Messages API event stream carried (what a client builds from it)."""
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for _event, data in sse_events(text):
        event = json.loads(data)
        kind = event.get("type")
        if kind == "message_start":
            message = dict(event["message"])
        elif kind == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"])
        elif kind == "content_block_delta":
            block, body = blocks[event["index"]], event["delta"]
            if body.get("type") == "text_delta":
                block["text"] = block.get("text", "") + body.get("text", "")
            elif body.get("type") == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + body.get("thinking", "")
            elif body.get("type") == "signature_delta":
                block["signature"] = block.get("signature", "") + body.get("signature", "")
            elif body.get("type") == "input_json_delta":
                partial[event["index"]] = partial.get(event["index"], "") + \
                    body.get("partial_json", "")
        elif kind == "message_delta":
            message.update({k: v for k, v in (event.get("delta") or {}).items()})
            message["usage"] = {**(message.get("usage") or {}), **(event.get("usage") or {})}
        elif kind == "error":
            raise ValueError(f"the stream carried an error: {event.get('error')}")
    for index, text_json in partial.items():
        blocks[index]["input"] = json.loads(text_json) if text_json else {}
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            413: "request_too_large"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


# --- OpenAI Chat Completions -------------------------------------------------------------------


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def openai_completion(reply: Reply, model: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.input)}}
            for c in reply.tool_calls
        ]
    return {
        "id": reply.message_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
        "usage": {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
                  "total_tokens": reply.input_tokens + reply.output_tokens},
    }


def openai_stream(reply: Reply, model: str, created: int, *, usage: bool) -> Iterator[bytes]:
    return stream_openai_completion(openai_completion(reply, model, created), usage=usage)


def stream_openai_completion(completion: dict[str, Any], *, usage: bool) -> Iterator[bytes]:
    """A complete chat.completion, streamed as `chat.completion.chunk` objects."""
    head = {"id": completion.get("id"), "object": "chat.completion.chunk",
            "created": completion.get("created"), "model": completion.get("model")}
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(None, {**head, "choices": [{"index": 0, "delta": delta,
                                                "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    if message.get("content"):
        for piece in _pieces(message["content"], _TEXT_PIECE):
            yield chunk({"content": piece})
    for position, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        yield chunk({"tool_calls": [{"index": position, "id": call.get("id"),
                                     "type": "function",
                                     "function": {"name": function.get("name"),
                                                  "arguments": ""}}]})
        for piece in _pieces(function.get("arguments") or "", _JSON_PIECE):
            yield chunk({"tool_calls": [{"index": position, "function": {"arguments": piece}}]})
    yield chunk({}, choice.get("finish_reason"))
    if usage and completion.get("usage"):
        yield _sse(None, {**head, "choices": [], "usage": completion["usage"]})
    yield b"data: [DONE]\n\n"


def assemble_openai_stream(text: str) -> dict[str, Any]:
    """The chat.completion a stream of chunks carried."""
    completion: dict[str, Any] = {}
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for _event, data in sse_events(text):
        if data.strip() == "[DONE]":
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise ValueError(f"the stream carried an error: {chunk['error']}")
        for key in ("id", "created", "model"):
            completion.setdefault(key, chunk.get(key))
        if chunk.get("usage"):
            completion["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                content.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call.get("index", 0), {
                    "id": None, "type": "function", "function": {"name": None, "arguments": ""}})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["function"]["name"] = function.get("name") or slot["function"]["name"]
                slot["function"]["arguments"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    completion.update(object="chat.completion",
                      choices=[{"index": 0, "message": message, "finish_reason": finish}])
    return completion


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "invalid_api_key", 404: "not_found"}.get(
        status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
