"""Which waiting job instance goes next, and why the others wait: pure decisions, no I/O.

When capacity is short, waiting jobs are served by dominant-resource fairness (DRF) across the
people who have work waiting: the user whose running work holds the smallest *dominant share*
(the largest of its fractions of the capacity's vCPUs, memory and GPUs) goes first, first come
first served within a user, and root's jobs count as one more user. :func:`fair_order` orders
the queue so; :func:`decide` walks that order for one scheduler pass:

- a job that would take its owner (or a group of theirs) past a quota waits, and holds nothing
  back: the next one in the order may go (:mod:`shipyard.core.quotas`);
- a job that fits what its backend has free is launched;
- the first job that does not fit waits for capacity, and the jobs after it on that backend
  wait behind it (no backfill: a stream of small jobs would otherwise keep a larger one, or
  another user's, waiting for ever).

Each waiting job is told why, naming the people whose work is in the way
(:func:`quota_message`, :func:`capacity_message`, :func:`held_message`): "Waiting for 2 vCPUs:
alice has 4 of their 4 in use (quota users.alice)". Users are named by the last part of their
ARN; job names never appear (another user's are not theirs to see).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from shipyard.core.placement import Resources
from shipyard.core.quotas import Bound, Load, Subject, amount, past

ROOT_NAME = "root"


def display_name(owner: str | None) -> str:
    """How messages name a job's owner: a user ARN's last part; ``root`` for None."""
    return owner.rsplit("/", 1)[-1] if owner else ROOT_NAME


@dataclasses.dataclass(frozen=True)
class Work:
    """A job's instances as placed (or as they would be): whose, on which backend, how big."""

    owner: str | None
    backend: str
    per_instance: Resources
    count: int

    @property
    def total(self) -> Resources:
        return self.per_instance * self.count

    @property
    def load(self) -> Load:
        total = self.total
        return Load(vcpus=total.cpus, gpus=total.gpus, instances=self.count)


@dataclasses.dataclass(frozen=True)
class Waiting:
    """A job waiting to be placed. ``key`` names it to the caller; ``created`` orders a user's."""

    key: str
    work: Work
    created: dt.datetime


@dataclasses.dataclass(frozen=True)
class Pool:
    """A backend as one pass sees it: its capacity, whether it can be reached, and how messages
    name it (``the machine``, ``the Ray cluster``)."""

    capacity: Resources
    available: bool = True
    label: str = "the machine"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What to do with a waiting job this pass: launch it, or let it wait saying ``reason``.
    ``for_capacity``: more capacity would help it (what a scaling cluster is asked for)."""

    key: str
    launch: bool
    reason: str | None = None
    for_capacity: bool = False


def dominant_share(used: Resources, capacity: Resources) -> float:
    """The largest fraction of ``capacity`` that ``used`` holds of any resource it has."""
    shares = [
        part / whole
        for part, whole in (
            (used.cpus, capacity.cpus),
            (used.memory_gib, capacity.memory_gib),
            (used.gpus, capacity.gpus),
        )
        if whole > 0
    ]
    return max(shares, default=0.0)


def fair_order(
    waiting: Iterable[Waiting], usage: Mapping[str | None, Resources], capacity: Resources
) -> list[Waiting]:
    """The queue in the order DRF serves it, given what each owner's running work holds.

    The owner with the smallest dominant share goes first (ties: the one whose waiting job is
    oldest); their oldest job is taken and counted as theirs, and the choice is made again. So
    one user's hundred queued jobs and another's one interleave, and the one goes first.
    """
    queues: dict[str | None, list[Waiting]] = defaultdict(list)
    for item in waiting:
        queues[item.work.owner].append(item)
    held = {owner: usage.get(owner, Resources(0, 0, 0)) for owner in queues}
    heap: list[tuple[float, dt.datetime, str, int, str | None]] = []
    for owner, items in queues.items():
        items.sort(key=lambda w: (w.created, w.key))
        heapq.heappush(heap, _entry(owner, items[0], held[owner], capacity, 0))
    order: list[Waiting] = []
    while heap:
        *_, index, owner = heapq.heappop(heap)
        item = queues[owner][index]
        order.append(item)
        held[owner] = held[owner] + item.work.total
        if index + 1 < len(queues[owner]):
            nxt = queues[owner][index + 1]
            heapq.heappush(heap, _entry(owner, nxt, held[owner], capacity, index + 1))
    return order


def _entry(
    owner: str | None, head: Waiting, used: Resources, capacity: Resources, index: int
) -> tuple[float, dt.datetime, str, int, str | None]:
    return (round(dominant_share(used, capacity), 9), head.created, owner or "", index, owner)


def decide(
    waiting: Sequence[Waiting],
    running: Sequence[Work],
    pools: Mapping[str, Pool],
    bounds: Mapping[str | None, Sequence[Bound]],
) -> list[Verdict]:
    """One pass's verdicts, in fair order (see the module docstring).

    Args:
        waiting: The jobs to place; ``work.backend`` must be in ``pools``.
        running: The launched work holding capacity (and counted against quotas).
        pools: The backends by name.
        bounds: The quotas each owner's work counts against (:meth:`QuotaBook.bounds`); an
            owner not in it has none.
    """
    capacity = sum((p.capacity for p in pools.values()), Resources(0, 0, 0))
    by_owner: dict[str | None, Resources] = defaultdict(lambda: Resources(0, 0, 0))
    on_pool: dict[str, dict[str | None, Resources]] = {
        name: defaultdict(lambda: Resources(0, 0, 0)) for name in pools
    }
    counted: dict[Subject, Load] = defaultdict(Load)
    members: dict[Subject, dict[str | None, Load]] = defaultdict(lambda: defaultdict(Load))

    def take(work: Work) -> None:
        by_owner[work.owner] += work.total
        if work.backend in on_pool:
            on_pool[work.backend][work.owner] += work.total
        for bound in bounds.get(work.owner, ()):
            counted[bound.holder] += work.load
            members[bound.holder][work.owner] += work.load

    for work in running:
        take(work)
    verdicts = []
    held: dict[str, Waiting] = {}  # per backend: the job first in line for its capacity
    for item in fair_order(waiting, by_owner, capacity):
        work = item.work
        pool = pools[work.backend]
        over = _over_quota(work, bounds.get(work.owner, ()), counted)
        if over is not None:
            bound, name = over
            reason = quota_message(bound, name, work.load, counted[bound.holder], members[bound.holder])
            verdicts.append(Verdict(item.key, False, reason))
            continue
        if not pool.available:
            verdicts.append(
                Verdict(item.key, False, f"Waiting for {pool.label}, which cannot be reached now", True)
            )
            continue
        in_use = on_pool[work.backend]
        free = pool.capacity - sum(in_use.values(), Resources(0, 0, 0))
        if work.backend in held:
            first = held[work.backend]
            reason = held_message(first.work, work, pool, in_use)
            verdicts.append(Verdict(item.key, False, reason, True))
            continue
        if not work.total.fits_in(free):
            held[work.backend] = item
            verdicts.append(Verdict(item.key, False, capacity_message(work.total, pool, in_use), True))
            continue
        take(work)
        verdicts.append(Verdict(item.key, True))
    return verdicts


def _over_quota(
    work: Work, bounds: Sequence[Bound], counted: Mapping[Subject, Load]
) -> tuple[Bound, str] | None:
    for bound in bounds:
        name = past(bound, counted.get(bound.holder, Load()), work.load)
        if name is not None:
            return bound, name
    return None


# -- why a job waits ----------------------------------------------------------------------------------
def quota_message(
    bound: Bound, name: str, asked: Load, used: Load, by_member: Mapping[str | None, Load]
) -> str:
    """``Waiting for 2 vCPUs: alice has 4 of their 4 in use (quota users.alice)``; for a group,
    ``...: group students has 14 of its 16 in use (alice 8, bob 6)``."""
    limit = getattr(bound.limits, name)
    head = f"Waiting for {amount(getattr(asked, name), name)}: "
    have = f"{getattr(used, name):g} of"
    if bound.holder.kind == "group":
        parts = _breakdown({owner: getattr(load, name) for owner, load in by_member.items()})
        return (
            head + f"{bound.holder.label} has {have} its {limit:g} in use" + (f" ({parts})" if parts else "")
        )
    source = bound.source.config_key.removeprefix("quotas.")
    return head + f"{bound.holder.label} has {have} their {limit:g} in use (quota {source})"


def capacity_message(asked: Resources, pool: Pool, in_use: Mapping[str | None, Resources]) -> str:
    """``Waiting for 2 vCPUs: the machine's 2 are in use (bob 1, alice 1)``, or ``...: 1 of the
    machine's 2 is free (in use: alice 1)``: the first resource short (vCPUs, GPUs, memory)."""
    name, want, total, free, parts = _short(asked, pool, in_use)
    head = f"Waiting for {amount(want, name)}: "
    whose = f" ({parts})" if parts else ""
    if free <= 1e-9:
        verb = "is" if total == 1 else "are"
        return head + f"{_possessive(pool.label)} {total:g} {verb} in use{whose}"
    verb = "is" if free == 1 else "are"
    return (
        head
        + f"{free:g} of {_possessive(pool.label)} {total:g} {verb} free"
        + (f" (in use: {parts})" if parts else "")
    )


def held_message(first: Work, work: Work, pool: Pool, in_use: Mapping[str | None, Resources]) -> str:
    """A job behind the one first in line for the capacity: ``Waiting behind bob's job, next by
    fair share (it needs 2 vCPUs of the machine's 4)``. It names no usage, which changes with
    every job that starts or ends: the first job's message says who holds the machine, and each of
    the many jobs behind it is not rewritten each time."""
    name, want, total, _, _ = _short(first.total, pool, in_use)
    owner = display_name(first.owner)
    whose = f"an earlier job of {owner}'s" if first.owner == work.owner else f"{owner}'s job"
    return f"Waiting behind {whose}, next by fair share (it needs {amount(want, name)} of {_possessive(pool.label)} {total:g})"


def _short(
    asked: Resources, pool: Pool, in_use: Mapping[str | None, Resources]
) -> tuple[str, float, float, float, str]:
    """The resource ``asked`` is shortest of: name, asked, capacity, free, who uses it."""
    used = sum(in_use.values(), Resources(0, 0, 0))
    free = pool.capacity - used
    for name, want, have, total, attribute in (
        ("vcpus", asked.cpus, free.cpus, pool.capacity.cpus, "cpus"),
        ("gpus", asked.gpus, free.gpus, pool.capacity.gpus, "gpus"),
        ("memory", asked.memory_gib, free.memory_gib, pool.capacity.memory_gib, "memory_gib"),
    ):
        if want > have + 1e-9:
            parts = _breakdown({owner: getattr(r, attribute) for owner, r in in_use.items()})
            return name, want, total, max(have, 0.0), parts
    # Nothing is short (the caller asked all the same): name the vCPUs.
    parts = _breakdown({owner: r.cpus for owner, r in in_use.items()})
    return "vcpus", asked.cpus, pool.capacity.cpus, max(free.cpus, 0.0), parts


def _breakdown(values: Mapping[str | None, float]) -> str:
    """``bob 2, alice 1``: who holds how much, most first."""
    held = sorted(
        ((display_name(owner), value) for owner, value in values.items() if value > 1e-9),
        key=lambda pair: (-pair[1], pair[0]),
    )
    return ", ".join(f"{name} {value:g}" for name, value in held)


def _possessive(label: str) -> str:
    return f"{label}'s"
