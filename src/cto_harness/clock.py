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
