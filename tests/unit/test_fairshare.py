"""Fair sharing of a short machine (core/fairshare.py): the queue's order, one pass's verdicts
and the messages a waiting job shows, as tables of cases."""

from __future__ import annotations

import datetime as dt

import pytest

from shipyard.core.fairshare import (
    Pool,
    Verdict,
    Waiting,
    Work,
    capacity_message,
    decide,
    dominant_share,
    fair_order,
    held_message,
    quota_message,
)
from shipyard.core.placement import Resources
from shipyard.core.quotas import Bound, Limits, Load, QuotaBook, Subject

ALICE, BOB, CAROL = (f"arn:aws:iam::000000000000:user/{n}" for n in ("alice", "bob", "carol"))
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
CPU = Resources(1, 1, 0)  # one vCPU and 1 GiB
MACHINE = Resources(4, 16, 0)


def waiting(
    key: str, owner: str | None, at: int, size: Resources = CPU, count: int = 1, backend: str = "local"
) -> Waiting:
    return Waiting(key, Work(owner, backend, size, count), T0 + dt.timedelta(seconds=at))


def running(owner: str | None, cpus: float, backend: str = "local") -> Work:
    return Work(owner, backend, Resources(cpus, cpus, 0), 1)


@pytest.mark.parametrize(
    ("used", "capacity", "share"),
    [
        (Resources(0, 0, 0), MACHINE, 0.0),
        (Resources(2, 2, 0), MACHINE, 0.5),  # vCPUs dominate
        (Resources(1, 12, 0), MACHINE, 0.75),  # memory dominates
        (Resources(1, 1, 1), Resources(4, 16, 2), 0.5),  # GPUs dominate
        (Resources(1, 1, 1), MACHINE, 0.25),  # no GPUs here: they do not count
        (Resources(1, 1, 0), Resources(0, 0, 0), 0.0),  # nothing to share
    ],
)
def test_the_dominant_share_is_the_largest_fraction_held(
    used: Resources, capacity: Resources, share: float
) -> None:
    assert dominant_share(used, capacity) == pytest.approx(share)


@pytest.mark.parametrize(
    ("queue", "usage", "order"),
    [
        # One user's hundred jobs and another's one: the one goes first, then they interleave.
        (
            [waiting(f"a{i}", ALICE, i) for i in range(4)] + [waiting("b0", BOB, 10)],
            {ALICE: Resources(2, 2, 0)},
            ["b0", "a0", "a1", "a2", "a3"],
        ),
        # Nobody holds anything: the oldest job goes first, then the users alternate.
        (
            [waiting("a0", ALICE, 0), waiting("a1", ALICE, 1), waiting("b0", BOB, 2), waiting("b1", BOB, 3)],
            {},
            ["a0", "b0", "a1", "b1"],
        ),
        # First come first served within a user, whatever the order given.
        ([waiting("a1", ALICE, 5), waiting("a0", ALICE, 1)], {}, ["a0", "a1"]),
        # Root's jobs are one more user.
        (
            [waiting("r0", None, 0), waiting("r1", None, 1), waiting("c0", CAROL, 2)],
            {None: Resources(1, 1, 0)},
            ["c0", "r0", "r1"],
        ),
        # The share counts the dominant resource: bob's memory-heavy job weighs more than alice's.
        (
            [waiting("a0", ALICE, 0), waiting("b0", BOB, 1)],
            {ALICE: Resources(2, 2, 0), BOB: Resources(1, 12, 0)},
            ["a0", "b0"],
        ),
        # A big job counts as what it takes: after bob's 3-vCPU job, alice's two go before bob's next.
        (
            [
                waiting("b0", BOB, 0, Resources(3, 3, 0)),
                waiting("b1", BOB, 1),
                waiting("a0", ALICE, 2),
                waiting("a1", ALICE, 3),
            ],
            {},
            ["b0", "a0", "a1", "b1"],
        ),
    ],
)
def test_the_queue_is_ordered_by_dominant_resource_fairness(
    queue: list[Waiting], usage: dict[str | None, Resources], order: list[str]
) -> None:
    assert [w.key for w in fair_order(queue, usage, MACHINE)] == order


def verdicts(
    queue: list[Waiting],
    busy: list[Work],
    book: QuotaBook = QuotaBook(),
    groups: dict[str, list[str]] | None = None,
    pools: dict[str, Pool] | None = None,
) -> dict[str, Verdict]:
    owners = {w.work.owner for w in queue} | {w.owner for w in busy}
    bounds = {
        o: book.bounds(o.rsplit("/", 1)[-1] if o else None, (groups or {}).get(o or "", [])) for o in owners
    }
    found = decide(queue, busy, pools or {"local": Pool(MACHINE)}, bounds)
    return {v.key: v for v in found}


def test_bob_goes_first_when_one_of_alices_ends() -> None:
    queue = [waiting(f"a{i}", ALICE, i) for i in range(1, 6)] + [waiting("b0", BOB, 10)]
    found = verdicts(queue, [running(ALICE, 1)] * 3)  # one vCPU free
    assert [k for k, v in found.items() if v.launch] == ["b0"]
    assert found["a1"].reason == "Waiting for 1 vCPU: the machine's 4 are in use (alice 3, bob 1)"
    assert found["a2"].reason == (
        "Waiting behind an earlier job of alice's, next by fair share (it needs 1 vCPU of the machine's 4)"
    )


def test_no_backfill_past_the_first_job_waiting_for_capacity() -> None:
    # Bob's 2-vCPU job is first by fair share; one vCPU is free, and alice's 1-vCPU job must not take it.
    queue = [waiting("b0", BOB, 5, Resources(2, 2, 0)), waiting("a1", ALICE, 0)]
    found = verdicts(queue, [running(ALICE, 3)])
    assert not found["b0"].launch and not found["a1"].launch
    assert found["b0"].reason == "Waiting for 2 vCPUs: 1 of the machine's 4 is free (in use: alice 3)"
    assert found["b0"].for_capacity and found["a1"].for_capacity
    assert found["a1"].reason == (
        "Waiting behind bob's job, next by fair share (it needs 2 vCPUs of the machine's 4)"
    )


def test_a_job_past_its_quota_waits_and_holds_nobody_back() -> None:
    book = QuotaBook({Subject("user", "alice"): Limits(vcpus=2)})
    queue = [waiting("a1", ALICE, 0), waiting("b0", BOB, 1)]
    found = verdicts(queue, [running(ALICE, 2)], book)
    assert not found["a1"].launch and found["b0"].launch
    assert found["a1"].reason == "Waiting for 1 vCPU: alice has 2 of their 2 in use (quota users.alice)"
    assert not found["a1"].for_capacity  # more machines would not help it


def test_the_default_quota_is_each_users_own() -> None:
    book = QuotaBook({Subject("default"): Limits(instances=1)})
    found = verdicts(
        [waiting("a1", ALICE, 0), waiting("b1", BOB, 1)], [running(ALICE, 1), running(BOB, 1)], book
    )
    assert found["a1"].reason == "Waiting for 1 instance: alice has 1 of their 1 in use (quota default)"
    assert found["b1"].reason == "Waiting for 1 instance: bob has 1 of their 1 in use (quota default)"
    assert verdicts([waiting("c1", CAROL, 0)], [running(ALICE, 1)], book)["c1"].launch


def test_a_group_quota_counts_its_members_together() -> None:
    book = QuotaBook({Subject("group", "students"): Limits(vcpus=3)})
    groups = {ALICE: ["students"], BOB: ["students"]}
    queue = [waiting("b1", BOB, 0, Resources(2, 2, 0)), waiting("c1", CAROL, 1)]
    found = verdicts(queue, [running(ALICE, 2)], book, groups)
    assert found["b1"].reason == "Waiting for 2 vCPUs: group students has 2 of its 3 in use (alice 2)"
    assert found["c1"].launch  # carol is not a student


def test_work_placed_this_pass_counts_against_the_quota_at_once() -> None:
    book = QuotaBook({Subject("user", "alice"): Limits(vcpus=2)})
    found = verdicts([waiting(f"a{i}", ALICE, i) for i in range(3)], [], book)
    assert [k for k, v in found.items() if v.launch] == ["a0", "a1"]
    assert found["a2"].reason == "Waiting for 1 vCPU: alice has 2 of their 2 in use (quota users.alice)"


def test_a_quota_on_what_a_job_does_not_ask_does_not_hold_it() -> None:
    book = QuotaBook({Subject("user", "alice"): Limits(gpus=0, endpoints=0)})
    assert verdicts([waiting("a0", ALICE, 0)], [], book)["a0"].launch


def test_root_has_no_quota() -> None:
    book = QuotaBook({Subject("default"): Limits(vcpus=0)})
    assert verdicts([waiting("r0", None, 0)], [running(None, 3)], book)["r0"].launch


def test_each_backend_has_its_own_line() -> None:
    pools = {"local": Pool(MACHINE), "ray": Pool(Resources(8, 32, 0), label="the Ray cluster")}
    queue = [waiting("big", ALICE, 0, Resources(4, 4, 0)), waiting("r0", BOB, 1, backend="ray")]
    found = verdicts(queue, [running(CAROL, 1)], pools=pools)
    assert not found["big"].launch and found["r0"].launch


def test_a_backend_out_of_reach_says_so() -> None:
    found = verdicts(
        [waiting("a0", ALICE, 0)],
        [],
        pools={"local": Pool(MACHINE, available=False, label="the Ray cluster")},
    )
    assert found["a0"] == Verdict(
        "a0", False, "Waiting for the Ray cluster, which cannot be reached now", True
    )


@pytest.mark.parametrize(
    ("asked", "in_use", "message"),
    [
        (
            Resources(2, 2, 0),
            {BOB: Resources(2, 2, 0), ALICE: Resources(2, 2, 0)},
            "Waiting for 2 vCPUs: the machine's 4 are in use (alice 2, bob 2)",
        ),
        (
            Resources(2, 2, 0),
            {ALICE: Resources(3, 3, 0)},
            "Waiting for 2 vCPUs: 1 of the machine's 4 is free (in use: alice 3)",
        ),
        (
            Resources(1, 1, 0),
            {None: Resources(4, 4, 0)},
            "Waiting for 1 vCPU: the machine's 4 are in use (root 4)",
        ),
        (
            Resources(1, 8, 0),
            {ALICE: Resources(1, 12, 0)},
            "Waiting for 8 GiB of memory: 4 of the machine's 16 are free (in use: alice 12)",
        ),
    ],
)
def test_capacity_messages_name_who_holds_it(
    asked: Resources, in_use: dict[str | None, Resources], message: str
) -> None:
    assert capacity_message(asked, Pool(MACHINE), in_use) == message


def test_a_gpu_short_is_named_before_memory() -> None:
    gpus = Pool(Resources(8, 64, 2), label="the Ray cluster")
    assert capacity_message(Resources(1, 80, 1), gpus, {BOB: Resources(1, 1, 2)}) == (
        "Waiting for 1 GPU: the Ray cluster's 2 are in use (bob 2)"
    )


def test_quota_and_held_messages() -> None:
    own = Bound(Subject("user", "alice"), Subject("user", "alice"), Limits(vcpus=4))
    assert quota_message(own, "vcpus", Load(vcpus=2), Load(vcpus=4), {}) == (
        "Waiting for 2 vCPUs: alice has 4 of their 4 in use (quota users.alice)"
    )
    group = Bound(Subject("group", "students"), Subject("group", "students"), Limits(gpus=2))
    by_member = {ALICE: Load(gpus=1), BOB: Load(gpus=1), CAROL: Load()}
    assert quota_message(group, "gpus", Load(gpus=1), Load(gpus=2), by_member) == (
        "Waiting for 1 GPU: group students has 2 of its 2 in use (alice 1, bob 1)"
    )
    first = Work(ALICE, "local", Resources(2, 2, 0), 1)
    later = Work(ALICE, "local", CPU, 1)
    assert held_message(first, later, Pool(MACHINE), {BOB: Resources(3, 3, 0)}) == (
        "Waiting behind an earlier job of alice's, next by fair share (it needs 2 vCPUs of the machine's 4)"
    )
