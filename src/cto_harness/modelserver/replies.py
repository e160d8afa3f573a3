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
    yield _sse("message_start", {"type": "message_start", "message": {
        "id": reply.message_id, "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
    }})
    yield _sse("ping", {"type": "ping"})
    index = 0
    if reply.text:
        yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                           "content_block": {"type": "text", "text": ""}})
        for piece in _pieces(reply.text, _TEXT_PIECE):
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": {"type": "text_delta", "text": piece}})
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    for call in reply.tool_calls:
        yield _sse("content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}},
        })
        arguments = json.dumps(call.input, separators=(",", ":"))
        for piece in ["", *_pieces(arguments, _JSON_PIECE)]:
            yield _sse("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            })
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    yield _sse("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": reply.output_tokens},
    })
    yield _sse("message_stop", {"type": "message_stop"})


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
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(None, {"id": reply.message_id, "object": "chat.completion.chunk",
                           "created": created, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    if reply.text:
        for piece in _pieces(reply.text, _TEXT_PIECE):
            yield chunk({"content": piece})
    for position, call in enumerate(reply.tool_calls):
        yield chunk({"tool_calls": [{"index": position, "id": call.id, "type": "function",
                                     "function": {"name": call.name, "arguments": ""}}]})
        for piece in _pieces(json.dumps(call.input), _JSON_PIECE):
            yield chunk({"tool_calls": [{"index": position, "function": {"arguments": piece}}]})
    yield chunk({}, _finish(reply))
    if usage:
        yield _sse(None, {"id": reply.message_id, "object": "chat.completion.chunk",
                          "created": created, "model": model, "choices": [],
                          "usage": {"prompt_tokens": reply.input_tokens,
                                    "completion_tokens": reply.output_tokens,
                                    "total_tokens": reply.input_tokens + reply.output_tokens}})
    yield b"data: [DONE]\n\n"


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "invalid_api_key", 404: "not_found"}.get(
        status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
