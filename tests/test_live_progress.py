"""The live view of a run, in parts: the provider's log is followed without following a link or
opening a FIFO, in bounded steps, line by line; what it says reaches a terminal inert. (The whole
of it, with a stand-in provider and a real terminal: tests/case/test_case_progress.py.)"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from cto_harness import tree
from cto_harness.core.live import LiveTail
from cto_harness.engines.base import LiveLog, ProviderEvent
from cto_harness.engines.case.events import live_event
from cto_harness.progress import RunProgress
from observer_helpers import CollectEvents


def _line(event: str, **fields: object) -> bytes:
    return json.dumps({"event": event, **fields}).encode() + b"\n"


def _tail(root: Path) -> tuple[LiveTail, CollectEvents]:
    seen = CollectEvents()
    log = LiveLog(root=root, folder=".case/t/events", prefix="run-", suffix=".jsonl",
                  parse=live_event)
    return LiveTail(log, seen), seen


def test_the_log_is_read_as_it_grows_and_a_bad_line_is_dropped(tmp_path: Path) -> None:
    events = tmp_path / ".case" / "t" / "events"
    events.mkdir(parents=True)
    log = events / "run-1.jsonl"
    tail, seen = _tail(tmp_path)
    tail._read_all()  # nothing there yet
    log.write_bytes(_line("phase_start", phase="implement", agent="implementer")
                    + b"not json\n" + _line("tool_start", tool="bash", args='{"command": "l'))
    tail._read_all()
    assert [e.type for e in seen.events] == ["provider.phase.started", "provider.tool.started"]
    with open(log, "ab") as handle:  # half a line, then the rest
        handle.write(b'{"event": "tool_end", "to')
    tail._read_all()
    assert len(seen.events) == 2
    with open(log, "ab") as handle:
        handle.write(b'ol": "bash"}\n' + _line("unknown_kind"))
    tail.stop()  # reads what came after the last poll
    assert [e.type for e in seen.events][-1] == "provider.tool.ended"
    assert len(seen.events) == 3


def test_a_link_or_a_fifo_in_place_of_the_log_is_never_opened(tmp_path: Path) -> None:
    events = tmp_path / ".case" / "t" / "events"
    events.mkdir(parents=True)
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(_line("phase_start", phase="SECRET"))
    (events / "run-link.jsonl").symlink_to(outside)
    os.mkfifo(events / "run-fifo.jsonl")  # opening it for reading would block forever
    (tmp_path / ".case" / "t").rename(tmp_path / ".case" / "real")
    (tmp_path / ".case" / "t").symlink_to(tmp_path / ".case" / "real")  # a linked folder too
    tail, seen = _tail(tmp_path)
    tail._read_all()
    (tmp_path / ".case" / "t").unlink()
    (tmp_path / ".case" / "real").rename(tmp_path / ".case" / "t")
    tail._read_all()  # the folder is real now; the links and the FIFO inside are still skipped
    tail.stop()
    assert seen.events == []


def test_a_log_growing_faster_than_it_is_read_is_skipped_to_its_end(tmp_path: Path) -> None:
    events = tmp_path / ".case" / "t" / "events"
    events.mkdir(parents=True)
    filler = _line("tool_start", tool="flood", args="x" * 400)
    data = filler * ((3 << 20) // len(filler)) + _line("phase_start", phase="last")
    (events / "run-1.jsonl").write_bytes(data)
    tail, seen = _tail(tmp_path)
    tail._read_all()
    tail.stop()
    assert seen.events[-1].data["phase"] == "last"
    assert len(seen.events) < 200  # the end of the backlog, not 3 MiB of it


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_provider_text_reaches_the_terminal_inert() -> None:
    hostile = "rm -rf /\x1b[2J\x1b]0;owned\x07\n\u202eevil"
    for stream in (Terminal(), io.StringIO()):
        progress = RunProgress(stream, "c [case]", interval=3600)
        progress.step("provider running")
        progress.provider_event(ProviderEvent(ts="", type="provider.phase.started",
                                              data={"phase": "impl\x1b[31m", "agent": "a\nb"}))
        progress.provider_event(ProviderEvent(ts="", type="provider.tool.started",
                                              data={"tool": "bash",
                                                    "args": json.dumps({"command": hostile})}))
        text = stream.getvalue()
        ours = text.replace("\x1b[1F\x1b[J", "")  # the redraw, on a terminal only
        assert "\x1b" not in ours and "\x07" not in ours and "\u202e" not in ours
        assert "last tool bash: rm -rf /" in progress.status()
        assert ("\x1b[1F\x1b[J" in text) is stream.isatty()


def test_a_folder_flooded_with_files_is_listed_only_until_the_logs_are_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A provider may fill its events folder with entries: only names that look like logs are
    # looked at, at most eight logs are followed, and once they are open it is not listed again.
    events = tmp_path / ".case" / "t" / "events"
    events.mkdir(parents=True)
    for i in range(200):
        (events / f"noise-{i}").write_bytes(b"")
    for i in range(10):
        (events / f"run-{i}.jsonl").write_bytes(_line("phase_start", phase=f"p{i}"))
    stats: list[bytes] = []
    real_stat = os.stat

    def counting_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if isinstance(path, bytes):
            stats.append(path)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tree.os, "stat", counting_stat)
    tail, seen = _tail(tmp_path)
    tail._read_all()
    assert stats and all(n.startswith(b"run-") for n in stats)
    assert len(seen.events) == 8  # eight logs followed, the rest left alone
    stats.clear()
    tail._read_all()
    assert stats == []  # full: the folder is not listed again
    tail.stop()


def test_the_live_line_fits_the_terminal_in_columns_not_characters() -> None:
    # A phase in fullwidth letters made the line wider than the terminal: cut by characters,
    # it wrapped, and each redraw (which moves up one row) left a stale row behind.
    from cto_harness.inert import display_width

    stream = Terminal()  # 100 columns (no size to ask: the default)
    progress = RunProgress(stream, "c [case]", interval=3600)
    progress.step("provider running")
    progress.provider_event(ProviderEvent(ts="", type="provider.phase.started",
                                          data={"phase": "\uff26" * 30, "agent": "\uff21" * 30}))
    progress.provider_event(ProviderEvent(ts="", type="provider.tool.started",
                                          data={"tool": "bash", "args": json.dumps(
                                              {"command": "\uff23" * 60})}))
    last = stream.getvalue().rsplit("\x1b[1F\x1b[J", 1)[-1].rstrip("\n").split("\n")[-1]
    assert "\uff26" in last
    assert sum(display_width(c) for c in last) <= 99
