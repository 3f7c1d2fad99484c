"""Quotas by user and group, and fair sharing, through the services: the config file's quotas,
changed at run time (kept across a restart); a job larger than a quota refused at create, one
past what is left waiting with a message, endpoints past theirs refused; the scheduler serving
users fairly. On a FakeBackend of 4 vCPUs (two ml.m5.large) and a temporary SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipyard.config import Settings
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.pricing import Rates
from shipyard.core.quotas import Limits, QuotaBook, QuotaExceeded, Subject, check_outright
from shipyard.core.quotas import Load as QuotaLoad
from shipyard.core.training import SecondaryStatus
from shipyard.envs import ImageResolver
from shipyard.errors import ConfigurationError, LimitExceededError, NotFoundError, ValidationError
from shipyard.services.costs import CostService
from shipyard.services.endpoints import EndpointConfigService, EndpointService, ModelService
from shipyard.services.quotas import QuotaService
from shipyard.store import Database, ResourceRepository, UsageRepository
from shipyard.store.quotas import QuotaRepository
from shipyard.testing import FakeModelServers, InlineExecutor
from tests.unit._services import SKLEARN, World
from tests.unit.test_tuning_service import tuning_request


def alice_bob_and_carol(world: World) -> None:
    for name in ("alice", "bob", "carol"):
        world.identity.create_user(name)
    world.identity.create_group("students")
    world.identity.add_to_group("students", "alice")
    world.identity.add_to_group("students", "bob")


def pending(world: World, name: str) -> str | None:
    """The job's waiting message; None once it was launched."""
    job = world.job(name)
    if job.run.launched:
        return None
    assert job.state.secondary == SecondaryStatus.PENDING
    return job.state.transitions[-1].message


def ends(world: World, name: str) -> None:
    """The job's instance ends; two passes later its capacity is free and placed again."""
    world.backend.instances(name)[0].end()
    world.scheduler.tick()
    world.scheduler.tick()


# -- the config file ---------------------------------------------------------------------------------
def test_the_config_file_sets_quotas_by_user_group_and_default(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        "port = 9000\n"
        "[quotas.users.alice]\nvcpus = 4\ngpus = 0\ninstances = 4\nendpoints = 1\n"
        "[quotas.groups.students]\nvcpus = 16\n"
        "[quotas.default]\nvcpus = 8\n"
    )
    book = Settings.load({"data_dir": tmp_path}, environ={}).user_quotas
    assert book.get(Subject("user", "alice")) == Limits(vcpus=4, gpus=0, instances=4, endpoints=1)
    assert [(b.holder, b.source, b.limits) for b in book.bounds("alice", ["students", "other"])] == [
        (Subject("user", "alice"), Subject("user", "alice"), Limits(4, 0, 4, 1)),
        (Subject("group", "students"), Subject("group", "students"), Limits(vcpus=16)),
    ]
    # A user without a quota of their own has the default, as their own.
    assert [(b.holder, b.source) for b in book.bounds("bob", [])] == [
        (Subject("user", "bob"), Subject("default"))
    ]
    assert book.bounds(None) == ()  # root: none


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "[quotas.users.alice]\nvcpu = 4\n",
            "quotas.users.alice.vcpu is not a quota; the quotas are vcpus, gpus",
        ),
        (
            "[quotas.users.alice]\nvcpus = -1\n",
            "quotas.users.alice.vcpus must be a whole number of 0 or more, got -1",
        ),
        ("[quotas.groups.students]\ngpus = 1.5\n", "quotas.groups.students.gpus must be a whole number"),
        ("[quotas.default]\nendpoints = true\n", "quotas.default.endpoints must be a whole number"),
        ("[quotas.teams.ml]\nvcpus = 4\n", "quotas.teams is not a quota table"),
        ('[quotas.users."a b"]\nvcpus = 4\n', "quotas.users name must be 1-64 characters"),
        ("[quotas]\nusers = 3\n", "quotas.users must be a table of names"),
    ],
)
def test_config_file_quota_errors_name_the_key(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigurationError, match="config.toml': " + error.replace(".", r"\.")):
        Settings.load({"data_dir": tmp_path}, environ={})


# -- the rules -------------------------------------------------------------------------------------------
def test_a_job_larger_than_a_quota_is_refused_naming_it() -> None:
    book = QuotaBook({Subject("default"): Limits(vcpus=4), Subject("group", "students"): Limits(gpus=1)})
    with pytest.raises(QuotaExceeded) as refused:
        check_outright(book.bounds("alice", ["students"]), QuotaLoad(vcpus=8, instances=2))
    assert refused.value.message == (
        "The quota 'vCPUs of alice (the default quota)' is 4 vCPUs, and this job asks 8 vCPUs at once, so it "
        "could never run. Ask for less, or ask an administrator to raise it (shipyard quotas set user:alice vcpus=<n>)."
    )
    assert isinstance(refused.value, LimitExceededError)  # answered as ResourceLimitExceeded
    with pytest.raises(QuotaExceeded, match=r"'GPUs of group students' is 1 GPU, and this job asks 2 GPUs"):
        check_outright(book.bounds("alice", ["students"]), QuotaLoad(vcpus=2, gpus=2, instances=1))
    check_outright(book.bounds("alice", ["students"]), QuotaLoad(vcpus=4, gpus=1, instances=1))


# -- the services ---------------------------------------------------------------------------------------
def test_jobs_larger_than_a_quota_are_refused_at_create_and_trials_with_their_tuning_job(
    world: World,
) -> None:
    alice_bob_and_carol(world)
    world.quotas.set(Subject("user", "alice"), {"vcpus": 2})
    with pytest.raises(QuotaExceeded, match=r"'vCPUs of alice' is 2 vCPUs, and this job asks 4 vCPUs"):
        world.create("two", owner="alice", count=2)
    with pytest.raises(NotFoundError):
        world.job("two")
    big = tuning_request("big")
    big["TrainingJobDefinition"]["ResourceConfig"]["InstanceType"] = "ml.m5.xlarge"  # 4 vCPUs a trial
    with pytest.raises(QuotaExceeded, match="'vCPUs of alice' is 2 vCPUs"):
        world.tuning.create(big, region="us-east-1", owner="arn:aws:iam::000000000000:user/alice")
    world.create("bobs", owner="bob", count=2)  # bob has no quota
    world.create("roots", count=2)  # nor has root


def test_a_job_past_what_its_quota_has_left_waits_saying_why_and_starts_when_room_is_made(
    world: World,
) -> None:
    alice_bob_and_carol(world)
    world.quotas.set(Subject("user", "alice"), {"vcpus": 2})
    world.quotas.set(Subject("group", "students"), {"instances": 2})
    world.create("a1", owner="alice")
    world.create("a2", owner="alice")
    world.create("b1", owner="bob")
    world.create("c1", owner="carol")
    world.scheduler.tick()
    assert pending(world, "a1") is None and pending(world, "b1") is None
    assert pending(world, "a2") == "Waiting for 2 vCPUs: alice has 2 of their 2 in use (quota users.alice)"
    assert pending(world, "c1") == "Waiting for 2 vCPUs: the machine's 4 are in use (alice 2, bob 2)"
    ends(world, "b1")  # room on the machine: carol's goes, alice's still waits for her quota
    assert pending(world, "c1") is None
    assert pending(world, "a2") == "Waiting for 2 vCPUs: alice has 2 of their 2 in use (quota users.alice)"
    world.quotas.set(Subject("user", "alice"), {"vcpus": 4})
    world.create("b2", owner="bob")
    world.scheduler.tick()  # bob holds less than alice: his job is first in line
    assert pending(world, "a2") == (
        "Waiting behind bob's job, next by fair share (it needs 2 vCPUs of the machine's 4)"
    )
    ends(world, "c1")
    assert pending(world, "b2") is None
    assert (
        pending(world, "a2")
        == "Waiting for 1 instance: group students has 2 of its 2 in use (alice 1, bob 1)"
    )
    waited = [t.to_wire() for t in world.job("b2").state.transitions]
    assert [(t["Status"], t["StatusMessage"]) for t in waited] == [
        ("Starting", "Preparing the instances for training"),
        ("Pending", "Waiting for 2 vCPUs: the machine's 4 are in use (alice 2, carol 2)"),
        ("Starting", "Launching the requested instances"),
    ]


def test_one_users_many_jobs_do_not_hold_back_anothers_one(world: World) -> None:
    for i in range(1, 7):
        world.create(f"a{i}", owner="alice")
        world.clock.advance(1)
    world.scheduler.tick()
    world.create("b1", owner="bob")
    world.scheduler.tick()
    assert pending(world, "b1") == "Waiting for 2 vCPUs: the machine's 4 are in use (alice 4)"
    assert pending(world, "a3") == (
        "Waiting behind bob's job, next by fair share (it needs 2 vCPUs of the machine's 4)"
    )
    ends(world, "a1")  # bob's goes as soon as one of alice's ends
    assert pending(world, "b1") is None
    assert pending(world, "a3") == "Waiting for 2 vCPUs: the machine's 4 are in use (alice 2, bob 2)"
    ends(world, "a2")  # alice holds nothing now, bob half: hers
    assert pending(world, "a3") is None
    assert pending(world, "a4") == "Waiting for 2 vCPUs: the machine's 4 are in use (alice 2, bob 2)"
    ends(world, "b1")
    assert pending(world, "a4") is None
    started = [world.job(n).run.instances[0].launched_at for n in ("a1", "b1", "a3", "a4")]
    assert started == sorted(started)


def test_quotas_set_at_run_time_are_kept_shown_and_reset(world: World, tmp_path: Path) -> None:
    alice_bob_and_carol(world)
    configured = QuotaBook.from_config({"default": {"vcpus": 8}, "users": {"carol": {"gpus": 0}}})
    repository = world.quotas.repository
    service = QuotaService(repository, configured, cache_seconds=0)
    # On top of what applies: alice has no quota of her own, so the default's.
    assert service.set(Subject("user", "alice"), {"instances": 2}) == Limits(vcpus=8, instances=2)
    assert service.set(Subject.parse("alice"), {"vcpus": 4}) == Limits(vcpus=4, instances=2)
    assert service.set(Subject.parse("group:students"), {"gpus": 2, "vcpus": None}) == Limits(gpus=2)
    restarted = QuotaService(repository, configured, cache_seconds=0)  # a new server on the same store
    assert restarted.book().effective(Subject("user", "alice")) == Limits(vcpus=4, instances=2)
    shown = {entry["subject"]: entry for entry in restarted.show()}
    assert list(shown) == ["default", "user:alice", "user:carol", "group:students"]
    assert (shown["user:alice"]["source"], shown["user:carol"]["source"]) == ("runtime", "config")
    assert shown["user:alice"]["limits"] == {"vcpus": 4, "gpus": None, "instances": 2, "endpoints": None}
    restarted.reset(Subject("user", "alice"))
    assert restarted.book().effective(Subject("user", "alice")) == Limits(vcpus=8)  # the default again
    with pytest.raises(NotFoundError, match="No quota was set at run time for user:alice"):
        restarted.reset(Subject("user", "alice"))
    with pytest.raises(ValidationError, match=r"user:bob\.cpus is not a quota"):
        restarted.set(Subject("user", "bob"), {"cpus": 4})
    with pytest.raises(ValidationError, match="A quota is for 'default', a user"):
        Subject.parse("team:ml")


def test_show_counts_what_each_holder_has_in_use(tmp_path: Path, template_db: Path) -> None:
    db_path = tmp_path / "q.db"
    db_path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{db_path}")
    alice = "arn:aws:iam::000000000000:user/alice"
    service = QuotaService(
        QuotaRepository(db),
        QuotaBook.from_config({"users": {"alice": {"vcpus": 4}}, "groups": {"students": {"endpoints": 3}}}),
        groups_of=lambda name: ["students"] if name == "alice" else [],
        usage=lambda: [
            (alice, QuotaLoad(vcpus=2, instances=1)),
            (alice, QuotaLoad(endpoints=2)),
            (None, QuotaLoad(vcpus=9)),
        ],
    )
    shown = {entry["subject"]: entry["in_use"] for entry in service.show()}
    assert shown["user:alice"]["vcpus"] == 2 and shown["group:students"]["endpoints"] == 2
    db.engine.dispose()


def test_endpoints_past_a_quota_are_refused_at_create(tmp_path: Path, template_db: Path) -> None:
    db_path = tmp_path / "e.db"
    db_path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{db_path}")
    quotas = QuotaService(
        QuotaRepository(db),
        QuotaBook.from_config(
            {"users": {"alice": {"endpoints": 2}}, "groups": {"students": {"endpoints": 3}}}
        ),
        groups_of=lambda name: ["students"] if name in ("alice", "bob") else [],
    )
    catalog = InstanceCatalog.load()
    costs = CostService(UsageRepository(db), catalog, Rates(), tags=lambda arn: {}, bucket_sizes=dict)
    models = ModelService(ResourceRepository(db, "model", "Model"), ImageResolver(), account_id="0")
    models.create(
        {"ModelName": "m", "PrimaryContainer": {"Image": SKLEARN, "ModelDataUrl": "s3://m/m.tar.gz"}},
        region="us-east-1",
    )
    configs = EndpointConfigService(
        ResourceRepository(db, "endpoint-config", "Endpoint configuration"), models, catalog, account_id="0"
    )
    endpoints = EndpointService(
        ResourceRepository(db, "endpoint", "Endpoint"),
        configs,
        models,
        lambda instance_type: FakeModelServers(),
        ImageResolver(),
        costs,
        endpoints_dir=tmp_path / "endpoints",
        account_id="0",
        workers=InlineExecutor(),
        user_quotas=quotas,
    )
    for name, count in (("one", 1), ("two", 2)):
        variant = {
            "VariantName": "v",
            "ModelName": "m",
            "InitialInstanceCount": count,
            "InstanceType": "ml.m5.large",
        }
        configs.create({"EndpointConfigName": name, "ProductionVariants": [variant]}, region="us-east-1")
    user = "arn:aws:iam::000000000000:user/{}".format

    def create(name: str, config: str, owner: str | None) -> Any:
        return endpoints.create(
            {"EndpointName": name, "EndpointConfigName": config}, region="us-east-1", owner=owner
        )

    create("alice-1", "two", user("alice"))
    with pytest.raises(QuotaExceeded) as refused:
        create("alice-2", "one", user("alice"))
    assert refused.value.message == (
        "The quota 'Endpoint instances of alice' is 2 endpoint instances, with current utilization of 2 endpoint "
        "instances and a request delta of 1 endpoint instance. Delete or scale down an endpoint of alice's, or ask "
        "an administrator to raise it (shipyard quotas set user:alice endpoints=<n>)."
    )
    create("bob-1", "one", user("bob"))  # the students' third
    with pytest.raises(QuotaExceeded, match="'Endpoint instances of group students' is 3 endpoint instances"):
        create("bob-2", "one", user("bob"))
    create("carol-1", "two", user("carol"))
    create("root-1", "two", None)
    endpoints.close()
    db.engine.dispose()
