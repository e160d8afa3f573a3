"""The model endpoint over real HTTP on loopback: both APIs, streamed as the APIs stream, the
scripts walked from the conversation, errors loud and logged, keys required, record without
credentials, replay by digest (unseen requests refused), and stopping by itself."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cto_harness.modelserver import (
    Cassette,
    EndpointConfig,
    ModelEndpoint,
    ScriptSet,
    request_digest,
)
from cto_harness.modelserver.cassette import redact
from cto_harness.modelserver.replies import assemble_anthropic_stream, assemble_openai_stream

WORKER = r'''
role = "worker"
system_prompt_pattern = '\A# Worker\b'

[prompt_captures]
target = 'target: (\S+)'

[[steps]]
text = "Looking first."
tool = "bash"
input = { command = "cat {{target}}" }
capture = { word = 'WORD=(\S+)' }
on_result = [{ matches = 'MISSING', goto = "missing" }]

[[steps]]
tool = "write"
input = { path = "{{target}}", content = "word {{word}}" }

[[steps]]
final = true
text = """Done with {{target}}.
<<<AGENT_RESULT
{"status":"completed","summary":"wrote {{word}}"}
AGENT_RESULT>>>"""

[[steps]]
label = "missing"
final = true
text = "<<<AGENT_RESULT\n{\"status\":\"failed\",\"summary\":\"\"}\nAGENT_RESULT>>>"
'''
TOOLS_ANTHROPIC = [{"name": n, "input_schema": {"type": "object"}} for n in ("bash", "write")]
TOOLS_OPENAI = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
                for n in ("bash", "write")]


@pytest.fixture
def scripts(tmp_path: Path) -> ScriptSet:
    folder = tmp_path / "scripts" / "unit"
    folder.mkdir(parents=True)
    (folder / "worker.toml").write_text(WORKER)
    return ScriptSet.load(folder)


@pytest.fixture
def serve() -> Iterator[Callable[..., ModelEndpoint]]:
    started: list[ModelEndpoint] = []

    def start(**fields: Any) -> ModelEndpoint:
        endpoint = ModelEndpoint(EndpointConfig(**fields))
        endpoint.start()
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


def post(url: str, path: str, body: Any, headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[int, str, bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request(method, path, body=data if method == "POST" else None,
                       headers={"content-type": "application/json", **(headers or {})})
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response.status, response.getheader("content-type") or "", raw


def events(raw: bytes) -> list[tuple[str | None, dict[str, Any] | str]]:
    found: list[tuple[str | None, dict[str, Any] | str]] = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        lines = chunk.split("\n")
        name = next((ln[7:] for ln in lines if ln.startswith("event: ")), None)
        data = "".join(ln[6:] for ln in lines if ln.startswith("data: "))
        found.append((name, data if data == "[DONE]" else json.loads(data)))
    return found


def anthropic_body(*turns: tuple[dict[str, Any], str], stream: bool = True,
                   prompt: str = "target: notes.txt") -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    for call, output in turns:
        messages.append({"role": "assistant", "content": [call]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call["id"], "content": output}]})
    return {"model": "m", "max_tokens": 100, "stream": stream, "tools": TOOLS_ANTHROPIC,
            "system": [{"type": "text", "text": "# Worker — unit\n\nwork."}],
            "messages": messages}


def test_anthropic_stream_is_the_wire_format(serve, scripts) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(mode="scripted", scripts=scripts)
    status, content_type, raw = post(endpoint.url, "/v1/messages", anthropic_body())
    assert status == 200 and content_type.startswith("text/event-stream")
    seen = events(raw)
    # Every event names itself twice, as the API does: `event:` and the data's `type`.
    assert all(isinstance(d, dict) and d["type"] == name for name, d in seen)
    names = [name for name, _ in seen]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    blocks = [d["content_block"] for n, d in seen if n == "content_block_start"]
    assert [b["type"] for b in blocks] == ["text", "tool_use"]
    assert blocks[1]["input"] == {} and blocks[1]["id"].startswith("toolu_")
    json_deltas = [d["delta"] for n, d in seen
                   if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert json_deltas[0]["partial_json"] == ""  # as the API opens a tool's input
    assert json.loads("".join(d["partial_json"] for d in json_deltas)) == {
        "command": "cat notes.txt"}
    stops = [d["index"] for n, d in seen if n == "content_block_stop"]
    assert stops == [0, 1]
    delta = next(d for n, d in seen if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] > 0
    message = assemble_anthropic_stream(raw.decode())
    assert message["content"][0] == {"type": "text", "text": "Looking first."}
    assert message["stop_reason"] == "tool_use" and message["model"] == "m"


def test_anthropic_json_and_the_script_walk(serve, scripts) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(mode="scripted", scripts=scripts)
    first = json.loads(post(endpoint.url, "/v1/messages", anthropic_body(stream=False))[2])
    call = first["content"][1]
    assert first["stop_reason"] == "tool_use" and call["name"] == "bash"
    # Turn 2: the captured word (hostile on purpose) goes into the write verbatim...
    second = json.loads(post(endpoint.url, "/v1/messages", anthropic_body(
        (call, "WORD=a'b;rm\n"), stream=False))[2])
    write = second["content"][0]
    assert write["input"] == {"path": "notes.txt", "content": "word a'b;rm"}
    # ...and into the final text JSON-escaped, so the result block still parses.
    final = json.loads(post(endpoint.url, "/v1/messages", anthropic_body(
        (call, "WORD=x\"y"), (write, "ok"), stream=False))[2])
    assert final["stop_reason"] == "end_turn"
    text = final["content"][0]["text"]
    result = json.loads(text.split("<<<AGENT_RESULT", 1)[1].split("AGENT_RESULT>>>")[0])
    assert result == {"status": "completed", "summary": 'wrote x"y'}
    # A tool result that matches the jump goes to the labelled step.
    missing = json.loads(post(endpoint.url, "/v1/messages", anthropic_body(
        (call, "cat: notes.txt: MISSING"), stream=False))[2])
    assert '"status":"failed"' in missing["content"][0]["text"]
    # The same question, the same answer (ids included): the endpoint keeps no state.
    again = json.loads(post(endpoint.url, "/v1/messages", anthropic_body(stream=False))[2])
    assert again == first


def test_shell_quoting_of_captured_values(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "quote"
    folder.mkdir()
    (folder / "worker.toml").write_text(WORKER)
    endpoint = serve(mode="scripted", scripts=ScriptSet.load(folder))
    body = anthropic_body(stream=False, prompt="target: $(touch${IFS}pwned);'x")
    reply = json.loads(post(endpoint.url, "/v1/messages", body)[2])
    assert reply["content"][1]["input"]["command"] == "cat '$(touch${IFS}pwned);'\"'\"'x'"


def test_openai_stream_and_json(serve, scripts) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(mode="scripted", scripts=scripts)
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True},
            "tools": TOOLS_OPENAI,
            "messages": [{"role": "system", "content": "# Worker — unit"},
                         {"role": "user", "content": "target: a.txt"}]}
    status, content_type, raw = post(endpoint.url, "/v1/chat/completions", body)
    assert status == 200 and content_type.startswith("text/event-stream")
    seen = events(raw)
    assert seen[-1] == (None, "[DONE]")
    chunks = [d for _, d in seen[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)  # type: ignore[index]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # type: ignore[index]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0  # type: ignore[index]
    finish = [c["choices"][0]["finish_reason"] for c in chunks[:-1]]  # type: ignore[index]
    assert finish[-1] == "tool_calls" and set(finish[:-1]) == {None}
    completion = assemble_openai_stream(raw.decode())
    call = completion["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "bash"
    assert json.loads(call["function"]["arguments"]) == {"command": "cat a.txt"}
    # The tool result comes back as a `tool` message; the next step answers it.
    body["messages"] += [{"role": "assistant", "content": "Looking first.", "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": call["id"], "content": "WORD=w"}]
    body["stream"] = False
    answer = json.loads(post(endpoint.url, "/v1/chat/completions", body)[2])
    assert answer["object"] == "chat.completion"
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "path": "a.txt", "content": "word w"}


@pytest.mark.parametrize("change, fragment", [
    (lambda b: b.update(system="# Somebody else"), "no role script"),
    (lambda b: b.update(tools=[TOOLS_ANTHROPIC[1]]), "does not offer"),
    (lambda b: b["messages"].extend([
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "write",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                      "content": "x"}]}]), "did not come from this script"),
    (lambda b: b["messages"].append({"role": "assistant", "content": "hm"}),
     "no tool results after it"),
])
def test_a_conversation_the_script_cannot_answer_is_refused_and_logged(
    serve, scripts, tmp_path: Path, change: Callable[[dict[str, Any]], None], fragment: str
) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "exchanges.jsonl"
    endpoint = serve(mode="scripted", scripts=scripts, log_path=log)
    body = anthropic_body(stream=False)
    change(body)
    status, _type, raw = post(endpoint.url, "/v1/messages", body)
    error = json.loads(raw)
    assert status == 400 and error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert fragment in error["error"]["message"]
    endpoint.stop()
    (row,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert row["status"] == 400 and fragment in row["error"]
    assert endpoint.stats.errors == 1


def test_bad_requests(serve, scripts) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(mode="scripted", scripts=scripts)
    assert post(endpoint.url, "/v1/messages", b"{not json")[0] == 400
    assert post(endpoint.url, "/v1/messages", [1, 2])[0] == 400
    status, _type, raw = post(endpoint.url, "/v1/responses", {"model": "m"})
    assert status == 404 and b"/v1/chat/completions" in raw
    assert post(endpoint.url, "/v1/messages", b"", method="GET")[0] == 404


def test_the_run_key_is_required(serve, scripts) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(mode="scripted", scripts=scripts, token="run-key-123456")
    body = anthropic_body(stream=False)
    assert post(endpoint.url, "/v1/messages", body)[0] == 401
    assert post(endpoint.url, "/v1/messages", body, {"x-api-key": "wrong"})[0] == 401
    assert post(endpoint.url, "/v1/messages", body, {"x-api-key": "run-key-123456"})[0] == 200
    assert post(endpoint.url, "/v1/messages", body,
                {"authorization": "Bearer run-key-123456"})[0] == 200


def test_it_listens_on_loopback_only(serve, scripts) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(mode="scripted", scripts=scripts)
    assert endpoint.url.startswith("http://127.0.0.1:")
    assert endpoint._server is not None and endpoint._server.server_address[0] == "127.0.0.1"
    port = int(endpoint.url.rsplit(":", 1)[1])
    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)
                 if info[0] == socket.AF_INET} - {"127.0.0.1", "127.0.1.1"}
    for address in addresses:  # another interface of this machine: nobody answers there
        with socket.socket() as probe:
            probe.settimeout(5)
            assert probe.connect_ex((address, port)) != 0


def test_it_stops_by_itself_when_idle(serve, scripts) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(mode="scripted", scripts=scripts, idle_timeout=0.3)
    assert post(endpoint.url, "/v1/messages", anthropic_body(stream=False))[0] == 200
    assert endpoint.wait(timeout=60), "the endpoint did not stop after being idle"
    assert "idle" in (endpoint.stats.stopped_because or "")
    with pytest.raises(OSError):
        post(endpoint.url, "/v1/messages", anthropic_body(stream=False))


def test_record_writes_no_credential_and_replay_serves_by_digest(
    serve, scripts, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    upstream = serve(mode="scripted", scripts=scripts, token="upstream-secret-key-1")
    cassette = tmp_path / "cassette.jsonl"
    recorder = serve(mode="record", upstream=upstream.url, record_to=cassette,
                     upstream_headers={"x-api-key": "upstream-secret-key-1"},
                     secrets=["an-env-secret-value"], volatile={"WORKSPACE": "/runs/one/ws"})
    client_key = {"x-api-key": "client-run-key-987654"}
    body = anthropic_body(prompt="target: /runs/one/ws/notes.txt an-env-secret-value")
    status, _type, raw = post(recorder.url, "/v1/messages", body, client_key)
    assert status == 200
    relayed = assemble_anthropic_stream(raw.decode())
    direct = assemble_anthropic_stream(post(upstream.url, "/v1/messages", body,
                                            {"x-api-key": "upstream-secret-key-1"})[2].decode())
    assert relayed == direct  # the proxy relays what the upstream sent
    recorder.stop()  # waits for the exchange under way: its row is written after the reply
    text = cassette.read_text()
    for secret in ("upstream-secret-key-1", "client-run-key-987654", "an-env-secret-value"):
        assert secret not in text
    assert "x-api-key" not in text.lower() and "[REDACTED]" in text
    (row,) = [json.loads(x) for x in text.splitlines()]
    assert row["request"]["messages"][0]["content"].startswith("target: <<WORKSPACE>>/notes.txt")
    assert row["response"]["message"]["content"][1]["input"] == {
        "command": "cat <<WORKSPACE>>/notes.txt"}
    # Digested as written: the secrets redacted first.
    assert row["digest"] == request_digest(
        "/v1/messages", redact(body, ["an-env-secret-value"]), {"WORKSPACE": "/runs/one/ws"})

    # Replayed in another run: its own paths come back into the recorded answer. The secret is
    # redacted before digesting, on both sides, so the same question still matches.
    log = tmp_path / "replay.jsonl"
    replay = serve(mode="replay", cassette=Cassette(cassette), log_path=log,
                   secrets=["an-env-secret-value"], volatile={"WORKSPACE": "/runs/two/ws"})
    again = anthropic_body(prompt="target: /runs/two/ws/notes.txt an-env-secret-value")
    status, _type, raw = post(replay.url, "/v1/messages", again)
    assert status == 200
    replayed = assemble_anthropic_stream(raw.decode())
    assert replayed["content"][1]["input"] == {"command": "cat /runs/two/ws/notes.txt"}
    assert replayed["content"][1]["id"] == relayed["content"][1]["id"]
    # Recorded once, served once: the same question again is unseen, and said so.
    status, _type, raw = post(replay.url, "/v1/messages", again)
    assert status == 400 and b"already served" in raw
    # A question never recorded is refused, and logged with what was digested.
    other = anthropic_body(prompt="target: /runs/two/ws/other.txt")
    status, _type, raw = post(replay.url, "/v1/messages", other)
    assert status == 400 and b"never recorded" in raw
    replay.stop()
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    # Each row is logged after its reply is sent: under load, not always in the requests' order.
    assert sorted(r["status"] for r in rows) == [200, 400, 400]
    logged = [(r["status"], r["request"]["messages"][0]["content"]) for r in rows
              if "request" in r]
    assert (400, "target: <<WORKSPACE>>/other.txt") in logged
    assert "an-env-secret-value" not in log.read_text()


def test_tool_output_is_not_part_of_the_digest() -> None:
    call = {"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "date"}}
    one = anthropic_body((call, "Mon 10:00"))
    two = anthropic_body((call, "Tue 11:30"))
    assert request_digest("/v1/messages", one, {}) == request_digest("/v1/messages", two, {})
    other = anthropic_body(({**call, "input": {"command": "ls"}}, "Mon 10:00"))
    assert request_digest("/v1/messages", other, {}) != request_digest("/v1/messages", one, {})
    assert request_digest("/v1/chat/completions", one, {}) != request_digest(
        "/v1/messages", one, {})


@pytest.mark.parametrize("target", [":{port}/v1/messages", "//127.0.0.1:{port}/v1/messages"])
def test_record_never_sends_the_key_to_another_origin(  # type: ignore[no-untyped-def]
        serve, scripts, tmp_path: Path, target: str) -> None:
    # A request target that is not a path on the upstream (`.evil.example/v1/messages` against
    # https://api.anthropic.com, or a port) made the recorder send the operator's key to a
    # host or port of the provider's choosing and hand the answer back.
    other_log = tmp_path / "other.jsonl"
    other = serve(mode="scripted", scripts=scripts, token="operator-key-1", log_path=other_log)
    other_port = other.url.rsplit(":", 1)[1]
    recorder = serve(mode="record", upstream="http://127.0.0.1", record_to=tmp_path / "c.jsonl",
                     upstream_headers={"x-api-key": "operator-key-1"})
    status, _type, raw = post(recorder.url, target.format(port=other_port),
                              anthropic_body(stream=False), {"x-api-key": "run-key-1"})
    assert status != 200, raw  # refused, or sent to the upstream's own origin (nobody there)
    other.stop()
    assert not other_log.exists() or other_log.read_text() == ""


def test_a_malformed_request_is_a_logged_400_never_a_traceback(
    serve, scripts, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    """The provider shapes every request: nesting past the JSON parser's depth or a field of the
    wrong type deep in a conversation is answered and logged like any bad request, and prints
    nothing on the harness's stderr."""
    log = tmp_path / "exchanges.jsonl"
    endpoint = serve(mode="scripted", scripts=scripts, log_path=log)
    wrong_input = anthropic_body(({"type": "tool_use", "id": "t", "name": "bash",
                                   "input": "not an object"}, "out"), stream=False)
    openai = {"model": "m", "messages": [{"role": "user", "content": "x"},
                                         {"role": "assistant", "tool_calls": ["not a call"]}]}
    for path, body in (("/v1/messages", b"[" * 100_000 + b"]" * 100_000),
                       ("/v1/messages", wrong_input), ("/v1/chat/completions", openai)):
        assert post(endpoint.url, path, body)[0] == 400
    endpoint.stop()
    assert "Traceback" not in capfd.readouterr().err
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["status"] for r in rows] == [400, 400, 400]
    assert endpoint.stats.errors == 3


def test_the_exchange_log_is_bounded(serve, scripts, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Every error row would carry what the provider sent (a role of megabytes, a request's
    whole view): rows are cut, and past the log's cap exchanges are counted, not written."""
    from cto_harness.modelserver import server

    monkeypatch.setattr(server, "MAX_LOG_BYTES", 200_000)
    log = tmp_path / "exchanges.jsonl"
    endpoint = serve(mode="scripted", scripts=scripts, log_path=log)
    body = {"model": "m", "messages": [{"role": "user", "content": "x"},
                                       {"role": "r" * 1_000_000}]}
    for _ in range(200):
        assert post(endpoint.url, "/v1/messages", body)[0] == 400
    endpoint.stop()
    assert log.stat().st_size < 200_000
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert "log_cut" in rows[-1] and endpoint.stats.requests == 200


def test_the_recorded_cassette_is_bounded(serve, scripts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cto_harness.modelserver.cassette import CassetteError, CassetteWriter

    writer = CassetteWriter(tmp_path / "c.jsonl", limit=10_000)
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 4000}]}
    for _ in range(2):
        writer.write(path="/v1/messages", body=body, volatile={}, status=400,
                     content_type="application/json", response="{}", message=None)
    with pytest.raises(CassetteError, match="limit"):
        writer.write(path="/v1/messages", body=body, volatile={}, status=400,
                     content_type="application/json", response="{}", message=None)
    assert (tmp_path / "c.jsonl").stat().st_size <= 10_000
