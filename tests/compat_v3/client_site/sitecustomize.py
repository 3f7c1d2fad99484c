"""Loaded by every v3 client script the tests run (its folder is on their PYTHONPATH): the SDK's
waits sleep at most 0.1 s. The SDK looks at a job or endpoint every 5 s (and tails logs as often),
made for jobs that take minutes to start; Shipyard's take well under a second. It still sends every
request it sends, only sooner (as tests/conftest.py does for the 2.x SDK in process)."""

import time

_sleep = time.sleep


def _sleep_briefly(seconds: float) -> None:
    _sleep(min(seconds, 0.1))


time.sleep = _sleep_briefly
