"""Quotas by user and group: the config file's, changed at run time by an administrator.

The book (:class:`~shipyard.core.quotas.QuotaBook`) is the config file's ``[quotas]`` with what
was set at run time on top (the ``quotas`` table: an entry set there replaces the config file's
for its subject, and a restart keeps it; :meth:`QuotaService.reset` forgets it). It is read
once and kept for ``cache_seconds`` (a change on this server is seen at once, one made by another
server on the same database within that time), as are each user's groups, so the scheduler can
ask every pass.

Who is asked: the job services at create (:meth:`QuotaService.check_job`: a job larger than a
quota on its own is refused), the scheduler every pass (:meth:`QuotaService.bounds`: a job past a
quota waits), the endpoint service at create and update (:meth:`QuotaService.check_endpoints`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.placement import Resources
from shipyard.core.quotas import (
    LIMIT_NAMES,
    Bound,
    Limits,
    Load,
    QuotaBook,
    Subject,
    check_outright,
    check_room,
)
from shipyard.errors import NotFoundError, ValidationError
from shipyard.store.quotas import QuotaRepository


def user_name(owner: str) -> str:
    """A user ARN's name (its last part)."""
    return owner.rsplit("/", 1)[-1]


class QuotaService:
    """Thread-safe.

    Args:
        repository: The quotas set at run time.
        configured: The config file's.
        groups_of: The names of the groups a user (by name) is in.
        usage: What counts against quotas now: (owner ARN, load) for each running job and
            endpoint (for :meth:`show`).
    """

    def __init__(
        self,
        repository: QuotaRepository,
        configured: QuotaBook = QuotaBook(),
        *,
        groups_of: Callable[[str], Sequence[str]] = lambda name: (),
        usage: Callable[[], Iterable[tuple[str | None, Load]]] = lambda: (),
        clock: Clock = SYSTEM_CLOCK,
        cache_seconds: float = 2.0,
    ) -> None:
        self.repository = repository
        self._configured = configured
        self._groups_of = groups_of
        self._usage = usage
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._book: tuple[float, QuotaBook, frozenset[Subject]] | None = None
        self._groups: dict[str, tuple[float, tuple[str, ...]]] = {}

    # -- the book ---------------------------------------------------------------------------------
    def book(self) -> QuotaBook:
        return self._read()[0]

    def _read(self) -> tuple[QuotaBook, frozenset[Subject]]:
        now = time.monotonic()
        with self._lock:
            hit = self._book
        if hit is not None and now - hit[0] < self._cache_seconds:
            return hit[1], hit[2]
        stored = self.repository.all()
        book = self._configured.with_entries(stored)
        with self._lock:
            self._book = (now, book, frozenset(stored))
        return book, frozenset(stored)

    def _changed(self) -> None:
        with self._lock:
            self._book = None

    def show(self) -> list[dict[str, Any]]:
        """Every quota: its subject, limits, where it was set (``config`` or ``runtime``), and
        what its holder has in use now (a default's: nothing; it is each user's own)."""
        book, stored = self._read()
        in_use: dict[Subject, Load] = {}
        for owner, load in self._usage():
            if owner is None:
                continue
            for bound in self.bounds(owner):
                in_use[bound.holder] = in_use.get(bound.holder, Load()) + load
        order = {"default": 0, "user": 1, "group": 2}
        found = []
        for subject in sorted(book.entries, key=lambda s: (order[s.kind], s.name)):
            used = in_use.get(subject, Load())
            found.append(
                {
                    "subject": str(subject),
                    "limits": {name: getattr(book.entries[subject], name) for name in LIMIT_NAMES},
                    "in_use": {name: getattr(used, name) for name in LIMIT_NAMES},
                    "source": "runtime" if subject in stored else "config",
                }
            )
        return found

    def set(self, subject: Subject, changes: Mapping[str, object]) -> Limits:
        """Change ``subject``'s quota: what applies to it now (its own, else for a user the
        default's) with ``changes`` made (a None value: no limit on that). Stored: a restart
        keeps it.

        Raises:
            ValidationError: an unknown limit, or a value that is not a whole number of 0 or more.
        """
        if not changes:
            raise ValidationError(
                f"Give at least one quota to set ({', '.join(LIMIT_NAMES)})", field="limits", value={}
            )
        limits = self.book().effective(subject).updated(changes, str(subject))
        self.repository.put(subject, limits, self._clock.now())
        self._changed()
        return limits

    def reset(self, subject: Subject) -> None:
        """Forget what was set at run time for ``subject`` (the config file's quota, if any,
        applies again).

        Raises:
            NotFoundError: nothing was set for it at run time.
        """
        if not self.repository.delete(subject):
            raise NotFoundError(f"No quota was set at run time for {subject}")
        self._changed()

    # -- the questions --------------------------------------------------------------------------
    def bounds(self, owner: str | None) -> tuple[Bound, ...]:
        """The quotas the work of ``owner`` (a user's ARN; None: root, who has none) counts
        against."""
        if owner is None:
            return ()
        book = self.book()
        if not book:
            return ()
        name = user_name(owner)
        return book.bounds(name, self._groups_of_cached(name))

    def check_job(self, owner: str | None, total: Resources, instances: int) -> None:
        """Refuse a job (``instances`` placed, ``total`` of them) larger than one of its
        owner's quotas on its own.

        Raises:
            QuotaExceeded: naming the quota.
        """
        check_outright(self.bounds(owner), Load(vcpus=total.cpus, gpus=total.gpus, instances=instances))

    def check_endpoints(
        self, owner: str | None, delta: int, in_use: Callable[[], Mapping[str | None, int]]
    ) -> None:
        """Refuse ``delta`` more endpoint instances for ``owner`` past a quota of theirs
        (``in_use``: endpoint instances by owner, asked only when a quota limits endpoints).

        Raises:
            QuotaExceeded: naming the quota, what is in use and the request.
        """
        bounds = [b for b in self.bounds(owner) if b.limits.endpoints is not None]
        if not bounds or delta <= 0:
            return
        used: dict[Subject, Load] = {}
        for other, count in in_use().items():
            if other is None:
                continue
            for bound in self.bounds(other):
                used[bound.holder] = used.get(bound.holder, Load()) + Load(endpoints=count)
        check_room(bounds, used, Load(endpoints=delta), "this endpoint")

    def _groups_of_cached(self, name: str) -> tuple[str, ...]:
        now = time.monotonic()
        with self._lock:
            hit = self._groups.get(name)
        if hit is not None and now - hit[0] < self._cache_seconds:
            return hit[1]
        try:
            groups = tuple(self._groups_of(name))
        except NotFoundError:  # a user deleted since: their work counts against no group
            groups = ()
        with self._lock:
            if len(self._groups) > 10_000:
                self._groups.clear()
            self._groups[name] = (now, groups)
        return groups
