"""Time as a dependency: services ask a :class:`Clock`, so that tests can drive them.

Every service takes ``clock: Clock = SYSTEM_CLOCK``; a test passes a :class:`ManualClock` and
moves it with :meth:`ManualClock.advance`, so a rule that depends on time (a deadline, an idle
endpoint, a budget's period, a cooldown) is tested without waiting for it.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol


class Clock(Protocol):
    """The current time, always timezone-aware UTC."""

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when told to (thread-safe). Starts at ``start`` (default: a fixed
    instant, 2026-01-01 00:00 UTC, so that tests read the same every run)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        if self._now.tzinfo is None:
            raise ValueError(f"ManualClock needs an aware datetime, got {self._now!r}")
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> dt.datetime:
        """Move the clock ``seconds`` forward; returns the new time."""
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)
            return self._now

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            self._now = when
