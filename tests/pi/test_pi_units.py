"""pi engine units: its JSON event stream read as its own account, the prompt, models.json."""

from __future__ import annotations

import json
from pathlib import Path

from cto_harness.core.fixtures import case_directory, load_case
from cto_harness.engines.pi.events import MAX_EVENTS, MAX_SPANS, LogRows, account
from cto_harness.engines.pi.prompt import model_config, render_prompt
from pi_helpers import REPO_ROOT

TS = "2026-01-01T00:00:00Z"


def read_lines(path: Path) -> tuple[list[dict[str, object]], int]:
    """Every row of the log, and how many lines were not one."""
    rows = LogRows(path)
    return list(rows), rows.bad


def _write(path: Path, rows: list[object], extra: bytes = b"") -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + extra)
    return path


def test_a_completed_run_is_mapped_to_turns_tools_and_an_outcome(tmp_path: Path) -> None:
    rows = [
        {"type": "session", "version": 3, "id": "s1"},
        {"type": "agent_start"}, {"type": "turn_start"},
        {"type": "message_update", "message": {}},  # a streaming delta: left out
        {"type": "tool_execution_start", "toolCallId": "t1", "toolName": "read"},
        {"type": "tool_execution_end", "toolCallId": "t1", "toolName": "read", "isError": False},
        {"type": "tool_execution_start", "toolCallId": "t2", "toolName": "bash"},
        {"type": "tool_execution_end", "toolCallId": "t2", "toolName": "bash", "isError": True},
        {"type": "turn_end"},
        {"type": "message_end", "message": {"role": "assistant", "stopReason": "stop",
                                            "content": [{"type": "text", "text": "Done."}]}},
        {"type": "agent_end", "messages": []},
    ]
    rows_read, bad = read_lines(_write(tmp_path / "out.log", rows, b"not json\n[1]\n"))
    assert bad == 2 and len(rows_read) == len(rows)
    told = account(rows_read, TS, "backend/stdout.log")
    types = [e.type for e in told.events]
    assert types == ["provider.session.started", "provider.pipeline.started",
                     "provider.turn.started", "provider.tool.started", "provider.tool.ended",
                     "provider.tool.started", "provider.tool.ended", "provider.turn.ended",
                     "provider.pipeline.ended"]
    assert told.outcome.outcome == "completed" and told.outcome.source == "backend/stdout.log"
    assert told.claims["tool_calls"] == 2 and told.claims["tool_errors"] == 1
    assert told.claims["final_text"] == "Done."
    assert [s.status for s in told.spans] == ["ok", "error", "ok"]
    assert {s.parent_key for s in told.spans[:2]} == {"turn-1"}


def test_an_errored_or_silent_run_never_reads_as_completed(tmp_path: Path) -> None:
    errored = account([{"type": "agent_start"},
                       {"type": "message_end", "message": {"role": "assistant",
                                                           "stopReason": "error",
                                                           "errorMessage": "connection refused"}},
                       {"type": "agent_end"}], TS, "x")
    assert errored.outcome.outcome == "failed" and errored.claims["error"] == "connection refused"
    silent = account([{"type": "agent_start"}, {"type": "turn_start"}], TS, "x")
    assert silent.outcome.outcome is None and silent.claims["agent_ended"] is False
    assert account([], TS, "x").claims["event_log"] is None


def test_a_planted_symlink_is_never_read(tmp_path: Path) -> None:
    secret = _write(tmp_path / "secret.log", [{"type": "agent_end"}])
    (tmp_path / "link.log").symlink_to(secret)
    assert read_lines(tmp_path / "link.log") == ([], 0)


def test_the_prompt_is_the_case_task_with_its_limits() -> None:
    spec = load_case(case_directory(REPO_ROOT / "harness", "r1-string-slugify")).spec
    prompt = render_prompt(spec)
    assert prompt.startswith("Task: Implement slugify\n")  # never `@file` or a flag
    assert spec.task.strip() in prompt and "slugkit/text.py" in prompt
    assert "python3 -I -m unittest discover" in prompt


def test_models_json_names_the_key_variable_never_a_value() -> None:
    config = model_config("anthropic", "http://127.0.0.1:9", "ANTHROPIC_API_KEY")
    assert config == {"providers": {"anthropic": {"baseUrl": "http://127.0.0.1:9",
                                                  "apiKey": "ANTHROPIC_API_KEY",
                                                  "api": "anthropic-messages"}}}
    assert model_config("anthropic", None, "ANTHROPIC_API_KEY") is None


def test_a_line_nested_past_the_parsers_limit_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    # pi echoes the model's tool-call arguments into its own lines (message_end,
    # tool_execution_start, turn_end, agent_end): a hostile model nests them thousands deep.
    deep = {"command": "true", "x": "@"}
    line = json.dumps({"type": "tool_execution_start", "toolCallId": "t1", "toolName": "bash",
                       "args": deep}).replace('"@"', "[" * 5000 + "]" * 5000)
    log = _write(tmp_path / "out.log", [{"type": "agent_start"}], line.encode() + b"\n")
    rows, bad = read_lines(log)
    assert bad == 1 and [r["type"] for r in rows] == ["agent_start"]


def test_every_field_of_any_json_kind_is_read_as_bounded_text() -> None:
    # A line pi did not write (a forged one) may hold any JSON value in any field: a number
    # where a list of parts belongs, an object or a megabyte where a short text belongs.
    rows: list[dict[str, object]] = []
    for value in (5, True, None, {"a": [1]}, [[["x"]]], "\u0085" * 10**6):
        rows += [{"type": "session", "id": value, "version": value},
                 {"type": "tool_execution_start", "toolCallId": value, "toolName": value},
                 {"type": "tool_execution_end", "toolCallId": value, "toolName": value,
                  "isError": value},
                 {"type": "message_end", "message": {"role": "assistant", "content": value,
                                                     "stopReason": value,
                                                     "errorMessage": value}}]
    rows.append({"type": "compaction" + "\u0085" * 10**6})  # a type pi never prints
    told = account([*rows, {"type": "agent_end"}], TS, "x")
    assert len(json.dumps([(e.type, dict(e.data)) for e in told.events])) < 20_000
    assert len(json.dumps(dict(told.claims))) < 20_000
    assert told.outcome.outcome == "failed"  # an error message was said, text or not


def test_a_flood_of_tiny_lines_keeps_a_bounded_account(tmp_path: Path) -> None:
    # 20-byte lines, each a turn's end: an event and a span apiece, a few bytes of log each.
    flood = MAX_EVENTS + MAX_SPANS
    log = _write(tmp_path / "out.log", [{"type": "turn_end"}] * flood + [{"type": "agent_end"}])
    told = account(read_lines(log)[0], TS, "x")
    assert len(told.events) == MAX_EVENTS + 1 and len(told.spans) == MAX_SPANS
    assert told.events[-1].type == "provider.pipeline.ended"  # the end is always kept
    assert told.claims["turns"] == 0 and told.outcome.outcome == "completed"
    assert told.claims["provider_records_left_out"] == flood - MAX_EVENTS + flood - MAX_SPANS


def test_the_log_is_read_as_it_is_iterated_never_held_whole(tmp_path: Path) -> None:
    # A 32 MiB log of tiny lines held whole, then parsed whole, cost ~700 MiB: the rows are
    # read a line at a time (here: a line added after the first row was taken is still read).
    log = _write(tmp_path / "out.log", [{"type": "agent_start"}], b"[1]\n")
    rows = LogRows(log)
    lines = iter(rows)
    assert next(lines) == {"type": "agent_start"}
    with open(log, "ab") as handle:
        handle.write(b'{"type": "agent_end"}\n')
    assert list(lines) == [{"type": "agent_end"}] and rows.bad == 1
