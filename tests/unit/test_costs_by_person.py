"""Costs and budgets by person: the ledger's owners in reports (by user, each user seeing their
own), and budgets of a user or a group (spend, commitments, launches denied, work stopped, who
sees which). The services on a real SQLite file, a manual clock and commitments given by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from shipyard.core.budgets import Budget
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.clock import ManualClock
from shipyard.core.costs import Interval, allocate
from shipyard.core.credentials import Principal
from shipyard.core.estimates import Estimate
from shipyard.core.pricing import Rates
from shipyard.errors import AccessDenied, LimitExceededError, NotFoundError, ValidationError
from shipyard.services.budgets import BudgetService, Commitment
from shipyard.services.costs import CostService
from shipyard.services.identity import IdentityService
from shipyard.store import UsageRepository
from shipyard.store._db import Database
from shipyard.store.budgets import BudgetRepository
from shipyard.store.identity import IdentityRepository

ACCOUNT = "000000000000"
T0 = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
CAROL = f"arn:aws:iam::{ACCOUNT}:user/students/carol"  # a user with a path


def _interval(key: str, hours: float, owner: str | None, **kw: object) -> Interval:
    return Interval(
        key=key,
        kind="training",
        name=key,
        arn=f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/{key}",
        instance_type="ml.m5.large",
        count=1,
        usd_per_hour=Decimal("1"),
        sagemaker_usd_per_hour=Decimal("2"),
        started=T0,
        last_seen=T0,
        ended=T0 + dt.timedelta(hours=hours),
        owner=owner,
        **kw,  # type: ignore[arg-type]
    )


def test_a_report_by_user_names_each_owner_and_keeps_old_rows_as_they_are() -> None:
    rows = allocate(
        [
            _interval("a", 2, ALICE),
            _interval("b", 1, BOB),
            _interval("c", 4, CAROL),
            _interval("lab", 3, None),  # root's: the lab's
            _interval("old", 0.5, "AKIAIOSFODNN7EXAMPLE"),  # recorded before there were users
        ],
        ["user"],
        start=T0,
        end=T0 + dt.timedelta(days=1),
        now=T0 + dt.timedelta(days=1),
    )
    assert [(r["user"], r["cost_usd"]) for r in rows] == [
        ("carol", Decimal("4.000000")),
        (None, Decimal("3.000000")),
        ("alice", Decimal("2.000000")),
        ("bob", Decimal("1.000000")),
        ("AKIAIOSFODNN7EXAMPLE", Decimal("0.500000")),
    ]


@dataclasses.dataclass
class Lab:
    clock: ManualClock
    identity: IdentityService
    costs: CostService
    budgets: BudgetService
    work: list[Commitment]
    alice: Principal
    bob: Principal
    admin: Principal

    def spent(self, key: str, hours: float, owner: str | None) -> None:
        self.costs.usage.open(_interval(key, hours, owner))
        self.costs.usage.close(key, T0 + dt.timedelta(hours=hours))


@pytest.fixture
def lab(tmp_path: Path, template_db: Path) -> Iterator[Lab]:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{path}")
    clock = ManualClock(T0 + dt.timedelta(hours=10))
    identity = IdentityService(
        IdentityRepository(db, ACCOUNT), account_id=ACCOUNT, clock=clock, cache_seconds=0
    )
    identity.create_user("alice")
    identity.create_user("bob")
    identity.create_user("carol", path="/students/")
    identity.create_group("students")
    identity.add_to_group("students", "alice")
    identity.add_to_group("students", "carol")
    costs = CostService(
        UsageRepository(db),
        InstanceCatalog.load(),
        Rates(),
        tags=lambda arn: {},
        bucket_sizes=lambda: {},
        clock=clock,
    )
    work: list[Commitment] = []
    budgets = BudgetService(BudgetRepository(db), costs, lambda: list(work), identity=identity, clock=clock)

    def user(arn: str, *groups: str) -> Principal:
        return Principal(arn, (), user=arn, groups=groups)

    admin = Principal(
        f"arn:aws:iam::{ACCOUNT}:user/pi", (), administrator=True, user=f"arn:aws:iam::{ACCOUNT}:user/pi"
    )
    yield Lab(clock, identity, costs, budgets, work, user(ALICE, "students"), user(BOB), admin)
    db.dispose()


def test_each_user_sees_their_own_spend_and_an_administrator_everyones(lab: Lab) -> None:
    lab.spent("a", 2, ALICE)
    lab.spent("b", 1, BOB)
    lab.spent("shared", 3, None)
    window = {"start": T0, "end": T0 + dt.timedelta(days=1)}

    def users(viewer: Principal | None) -> dict[str | None, Decimal]:
        return {r["user"]: r["cost_usd"] for r in lab.costs.report(["user"], viewer=viewer, **window)}

    assert users(None) == users(lab.admin) == {None: Decimal("3"), "alice": Decimal("2"), "bob": Decimal("1")}
    assert users(lab.alice) == {"alice": Decimal("2")}
    assert users(lab.bob) == {"bob": Decimal("1")}
    assert lab.costs.report(["kind"], viewer=lab.bob, **window)[0]["cost_usd"] == Decimal("1")


def test_a_users_budget_counts_their_work_and_a_groups_its_members(lab: Lab) -> None:
    lab.spent("a", 2, ALICE)
    lab.spent("b", 1, BOB)
    lab.spent("c", 4, CAROL)
    lab.spent("lab", 8, None)
    lab.work.extend(
        [
            Commitment("training", "a-running", {}, Decimal("0.5"), owner=ALICE),
            Commitment("training", "b-running", {}, Decimal("0.25"), owner=BOB),
        ]
    )
    mine = lab.budgets.create({"name": "alice-month", "limit_usd": "10", "user": "alice"})
    group = lab.budgets.create({"name": "students", "limit_usd": "10", "group": "students"})
    everyone = lab.budgets.create({"name": "all", "limit_usd": "100"})
    assert mine.whose == "user alice" and group.whose == "group students" and everyone.whose == "everyone"
    status = {b.name: lab.budgets.status(b) for b in (mine, group, everyone)}
    assert (status["alice-month"]["spend_usd"], status["alice-month"]["committed_usd"]) == (
        "2.000000",
        "0.500000",
    )
    assert (status["students"]["spend_usd"], status["students"]["committed_usd"]) == ("6.000000", "0.500000")
    assert (status["all"]["spend_usd"], status["all"]["committed_usd"]) == ("15.000000", "0.750000")
    assert status["students"]["group"] == "students" and status["alice-month"]["user"] == "alice"
    lab.identity.remove_from_group("students", "carol")  # a group's budget counts its members now
    assert lab.budgets.status(group)["spend_usd"] == "2.000000"


def test_launches_are_denied_by_the_launchers_budgets_only(lab: Lab) -> None:
    lab.spent("b", 3, BOB)
    lab.spent("c", 2, CAROL)
    lab.budgets.create({"name": "bob-cap", "limit_usd": "4", "user": "bob", "actions": ["deny"]})
    lab.budgets.create({"name": "students-cap", "limit_usd": "4", "group": "students", "actions": ["deny"]})
    big = Estimate(Decimal(1), Decimal(1), Decimal("1.5"), "1 x ml.m5.large x 90 min")
    denied = r"Budget 'bob-cap' \(user bob, monthly, limit \$4.00\) denies"
    with (
        pytest.raises(LimitExceededError, match=denied),
        lab.budgets.launch("training job", "b2", big, {}, owner=BOB),
    ):
        pass
    with lab.budgets.launch("training job", "a2", big, {}, owner=ALICE):  # the group has 2 left
        pass
    lab.work.append(Commitment("training", "a2", {}, Decimal("1.5"), owner=ALICE))
    denied = r"Budget 'students-cap' \(group students"
    with (
        pytest.raises(LimitExceededError, match=denied),
        lab.budgets.launch("training job", "c2", big, {}, owner=CAROL),
    ):
        pass
    with lab.budgets.launch("training job", "root", big, {}, owner=None):  # the lab's: neither
        pass
    assert lab.budgets.would_deny(big, {}, owner=BOB) == ["bob-cap"]
    assert lab.budgets.would_deny(big, {}, owner=BOB, viewer=lab.alice) == []  # not hers to see
    assert [e.kind for e in lab.budgets.events("bob-cap")] == ["denied"]


def test_a_users_budget_at_its_limit_stops_that_users_work(lab: Lab) -> None:
    stopped: list[str] = []
    for name, owner in (("a-run", ALICE), ("b-run", BOB), ("c-run", CAROL)):
        lab.work.append(
            Commitment("training", name, {}, Decimal(1), stop=lambda n=name: stopped.append(n), owner=owner)  # type: ignore[misc]
        )
    lab.spent("b", 2, BOB)
    lab.spent("c", 1, CAROL)
    lab.budgets.create({"name": "bob-stop", "limit_usd": "2", "user": "bob", "actions": ["stop"]})
    lab.budgets.create({"name": "students-stop", "limit_usd": "5", "group": "students", "actions": ["stop"]})
    lab.budgets.tick()
    assert stopped == ["b-run"]
    assert [e.message for e in lab.budgets.events("bob-stop") if e.kind == "stopped"] == [
        "Budget 'bob-stop' stopped training 'b-run': $2.00 spent of $2.00"
    ]


def test_a_user_sees_makes_and_deletes_their_own_budgets_only(lab: Lab) -> None:
    lab.budgets.create({"name": "lab-wide", "limit_usd": "100"}, viewer=lab.admin)
    lab.budgets.create({"name": "bob-cap", "limit_usd": "5", "user": "bob"}, viewer=lab.admin)
    own = lab.budgets.create({"name": "alice-own", "limit_usd": "3"}, viewer=lab.alice)
    assert own.user == "alice"  # a user's budget is theirs without saying so
    with pytest.raises(AccessDenied, match="a user may make budgets of their own only, not of user bob"):
        lab.budgets.create({"name": "for-bob", "limit_usd": "3", "user": "bob"}, viewer=lab.alice)
    with pytest.raises(AccessDenied, match="not of group students"):
        lab.budgets.create({"name": "for-us", "limit_usd": "3", "group": "students"}, viewer=lab.alice)
    assert [b.name for b in lab.budgets.visible(lab.alice)] == ["alice-own"]
    assert [b.name for b in lab.budgets.visible(lab.bob)] == ["bob-cap"]
    assert [b.name for b in lab.budgets.visible(lab.admin)] == ["alice-own", "bob-cap", "lab-wide"]
    with pytest.raises(NotFoundError, match="Budget 'bob-cap' does not exist"):
        lab.budgets.get("bob-cap", lab.alice)
    with pytest.raises(NotFoundError):
        lab.budgets.delete("lab-wide", lab.bob)
    with pytest.raises(NotFoundError):
        lab.budgets.events("bob-cap", viewer=lab.alice)
    lab.budgets.repository.record("bob-cap", "threshold", "t/bob", Decimal(4), "bob at 80%", T0)
    lab.budgets.repository.record("alice-own", "threshold", "t/alice", Decimal(3), "alice at 100%", T0)
    assert [e.message for e in lab.budgets.events(viewer=lab.alice)] == ["alice at 100%"]
    assert len(lab.budgets.events(viewer=lab.admin)) == 2
    lab.budgets.delete("alice-own", lab.alice)
    assert lab.budgets.visible(lab.alice) == []


def test_a_budgets_person_must_exist_and_be_one(lab: Lab) -> None:
    for body, field, message in (
        ({"user": "zoe"}, "user", "The user 'zoe' does not exist"),
        ({"group": "phd"}, "group", "The group 'phd' does not exist"),
        ({"user": "alice", "group": "students"}, "group", "a user's or a group's, not both"),
        ({"user": "not a name"}, "user", "user must be 1-64 characters"),
    ):
        with pytest.raises(ValidationError, match=message) as refused:
            lab.budgets.create({"name": "b", "limit_usd": "1", **body})
        assert refused.value.field == field
    stored_before = {
        k: v for k, v in Budget("before", Decimal(5)).to_json().items() if k not in ("user", "group")
    }
    assert Budget.from_json(stored_before).whose == "everyone"  # stored before budgets had people


def test_a_buckets_storage_is_its_creators(tmp_path: Path, template_db: Path) -> None:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{path}")
    costs = CostService(
        UsageRepository(db),
        InstanceCatalog.load(),
        Rates(),
        tags=lambda arn: {},
        bucket_sizes=lambda: {"alices-data": 2**30, "lab-data": 2**30, "empty": 0},
        owners=lambda arns: {arn: ALICE for arn in arns if arn.endswith(":alices-data")},
    )
    costs.sample_storage(force=True)
    owners = {i.name: i.owner for i in costs.usage.open_intervals("storage")}
    assert owners == {"alices-data": ALICE, "lab-data": None}
    db.dispose()
