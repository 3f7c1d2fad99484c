"""The object store's periodic housekeeping: uploads a crash left open, aborted after an age."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from shipyard.storage._base import ObjectStore

log = logging.getLogger(__name__)


class UploadSweeper:
    """A pass for a periodic loop: aborts multipart uploads begun more than ``max_age_hours``
    ago (0: never), looking at most once every ``every_seconds``, the first time at once."""

    def __init__(
        self,
        store: ObjectStore,
        max_age_hours: int,
        *,
        every_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_age = dt.timedelta(hours=max_age_hours)
        self._every = every_seconds
        self._clock = clock
        self._next: float | None = None

    def __call__(self) -> None:
        if not self._max_age:
            return
        now = self._clock()
        if self._next is not None and now < self._next:
            return
        self._next = now + self._every
        try:
            aborted = self._store.abort_stale_uploads(self._max_age)
        except Exception:  # the loop it runs in has other passes to run
            log.exception("Aborting stale multipart uploads failed")
            return
        if aborted:
            log.info("Aborted %d multipart upload(s) left open more than %s", aborted, self._max_age)
