"""The one clock of the harness: aware UTC datetimes, written as ISO 8601 with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime, timespec: str = "microseconds") -> str:
    """`2026-01-01T12:00:00.000000Z` (`timespec` as `datetime.isoformat` takes it)."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def now_iso(timespec: str = "milliseconds") -> str:
    """The current time as `iso` writes it (milliseconds: records and reports)."""
    return iso(utc_now(), timespec)


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 time as the harness writes it (`Z` or an offset) as an aware datetime; None
    for anything else (not a string, malformed, or without a zone: never guessed)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None
