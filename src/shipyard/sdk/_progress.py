"""Long waits shown as they go: a status line updated in place on a terminal or in Jupyter (Rich),
plain lines (printed when the status changes) anywhere else, such as a CI log or a pipe."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.text import Text


class Progress:
    """One status line about ``what``, with log lines printed above it.

    Args:
        what: What is being waited for ("Training job titanic-1").
        show: False prints nothing at all.
    """

    def __init__(self, what: str, *, show: bool = True) -> None:
        self.what = what
        self.show = show
        self.started = time.monotonic()
        self._console = Console(highlight=False, soft_wrap=True)
        self._status: Any = None
        self._last = ""

    def __enter__(self) -> Progress:
        if self.show and (self._console.is_terminal or self._console.is_jupyter):
            self._status = self._console.status(Text(self.what))
            self._status.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, text: str) -> None:
        """The status now: shown in place, or printed when it differs from the last one."""
        if not self.show or text == self._last:
            return
        self._last = text
        line = f"{self.what}: {text}"
        if self._status is not None:
            self._status.update(Text(f"{line} ({self.elapsed:.0f} s)"))
        else:
            print(line, flush=True)

    def log(self, line: str) -> None:
        """A line of the job's output, printed as it is (never read as markup)."""
        if not self.show:
            return
        if self._status is not None:
            self._console.print(Text(line))
        else:
            print(line, flush=True)

    def done(self, text: str) -> None:
        """The last word, always printed."""
        if not self.show:
            return
        if self._status is not None:
            self._console.print(Text(f"{self.what}: {text}"))
        else:
            print(f"{self.what}: {text}", flush=True)
