"""The connector's shorter waits: the SDK's sleeps capped, its clock ahead by what they left out."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard import connector


def test_the_sdks_sleeps_are_capped_and_its_clock_runs_ahead_by_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(connector.time, "sleep", slept.append)
    monkeypatch.setattr(connector.time, "time", lambda: 1000.0)
    quick = connector._QuickTime()
    quick.sleep(30)  # the SDK's wait between looks at a job
    quick.sleep(0.1)
    assert slept == [connector.MAX_POLL_SECONDS, 0.1]
    assert quick.time() == pytest.approx(
        1000.0 + 30 - connector.MAX_POLL_SECONDS
    )  # a timeout counts it in full


def test_a_pipeline_waits_polls_quickly_for_as_long_in_all() -> None:
    calls: list[tuple[float, int]] = []

    def original(self: Any, delay: float = 30, max_attempts: int = 60) -> None:
        calls.append((delay, max_attempts))

    connector._quick_wait(original)(object(), delay=30, max_attempts=60)
    delay, attempts = calls[0]
    assert delay == connector.MAX_POLL_SECONDS and delay * attempts >= 30 * 60
