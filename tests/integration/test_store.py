"""The metadata store, the same tests on a real SQLite file and on the local Postgres."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.core.quotas import Limits, Subject
from shipyard.core.tags import Tag
from shipyard.errors import ConflictError, LimitExceededError, ValidationError
from shipyard.store import Database, TagRepository
from shipyard.store.quotas import QuotaRepository

ARN = "arn:aws:sagemaker:us-east-1:000000000000:training-job/job-1"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path}/meta/shipyard.db")
    else:
        database = Database(request.getfixturevalue("postgres_url"))
        with database.engine.begin() as conn:  # each test starts from an empty schema
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    database.upgrade()
    yield database
    database.dispose()


def test_migrations_are_idempotent_and_recorded(db: Database) -> None:
    from shipyard.store._migrate import head_revision

    assert db.current_revision() == head_revision()
    db.upgrade()
    assert db.current_revision() == head_revision()


def test_the_migrations_make_the_schema_the_models_describe(db: Database) -> None:
    # A column or table added to store/_models.py without its migration (or the reverse) shows here.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from shipyard.store._models import Base

    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = [d for d in compare_metadata(context, Base.metadata) if d[0] != "remove_table"]
    assert differences == []


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_tags_roundtrip_and_overwrite(db: Database) -> None:
    repo = TagRepository(db)
    repo.add(ARN, [Tag("Project", "titanic"), Tag("Owner", "ada")])
    after = repo.add(ARN, [Tag("Project", "lesson")])
    assert after == [Tag("Owner", "ada"), Tag("Project", "lesson")]
    assert repo.tags_of(ARN) == after
    assert repo.tags_of(ARN, after_key="Owner", limit=5) == [Tag("Project", "lesson")]
    repo.delete(ARN, ["Owner", "missing"])
    assert repo.tags_of(ARN) == [Tag("Project", "lesson")]
    assert repo.tags_of("arn:aws:sagemaker:us-east-1:000000000000:model/other") == []


def test_a_key_given_twice_in_one_request_gets_its_last_value(db: Database) -> None:
    """What the SDK's HyperparameterTuner sends: its tags, then its estimator's, keys repeated."""
    repo = TagRepository(db)
    new = "arn:aws:sagemaker:us-east-1:000000000000:hyper-parameter-tuning-job/tune-1"
    tags = [Tag("Purpose", "tune"), Tag("Project", "a"), Tag("Purpose", "train")]
    assert repo.add(new, tags) == [Tag("Project", "a"), Tag("Purpose", "train")]
    assert repo.tags_of(new) == [Tag("Project", "a"), Tag("Purpose", "train")]


def test_a_buckets_tag_set_is_replaced_whole_and_ownership_kept_by_name(db: Database) -> None:
    from shipyard.core.identity import Ownership
    from shipyard.services.identity import IdentityService
    from shipyard.store.identity import IdentityRepository

    repo = TagRepository(db)
    bucket = "arn:aws:s3:::data"
    repo.replace(bucket, [Tag("a", "1"), Tag("b", "2")])
    repo.replace(bucket, [Tag("b", "3")])
    assert repo.tags_of(bucket) == [Tag("b", "3")]
    with pytest.raises(LimitExceededError):
        repo.replace(bucket, [Tag(f"k{i}", "v") for i in range(51)])
    assert repo.tags_of(bucket) == [Tag("b", "3")]

    identity = IdentityService(IdentityRepository(db, "000000000000"), account_id="000000000000")
    alice = "arn:aws:iam::000000000000:user/alice"
    identity.claim_for(ARN, alice)
    elsewhere = ARN.replace("us-east-1", "eu-west-1").replace("job-1", "JOB-1")
    fresh = IdentityService(IdentityRepository(db, "000000000000"), account_id="000000000000")
    assert fresh.owners([elsewhere, bucket]) == {elsewhere: Ownership(elsewhere, alice), bucket: None}


def test_limit_refusal_keeps_what_was_stored(db: Database) -> None:
    repo = TagRepository(db)
    repo.add(ARN, [Tag(f"k{i}", "v") for i in range(45)])
    with pytest.raises(LimitExceededError, match="at most 50 tags"):
        repo.add(ARN, [Tag(f"new{i}", "v") for i in range(6)])
    assert len(repo.tags_of(ARN)) == 45


def test_concurrent_adds_cannot_both_slip_under_the_limit(db: Database) -> None:
    repo = TagRepository(db)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def add(prefix: str) -> None:
        barrier.wait()
        try:
            repo.add(ARN, [Tag(f"{prefix}{i}", "v") for i in range(30)])
            outcomes.append("ok")
        except LimitExceededError:
            outcomes.append("refused")

    threads = [threading.Thread(target=add, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "refused"]
    assert len(repo.tags_of(ARN)) == 30


def test_tag_validation_names_the_key() -> None:
    with pytest.raises(ValidationError, match="'aws:secret'"):
        Tag("aws:secret", "x")
    with pytest.raises(ValidationError, match="Tag key"):
        Tag("", "x")


def test_list_tags_pages_with_tokens(db: Database) -> None:
    from shipyard.services import TaggingService

    service = TaggingService(TagRepository(db))
    service.add_tags(ARN, [Tag(f"k{i:02d}", str(i)) for i in range(12)])
    keys, token = [], None
    while True:
        page, token = service.list_tags(ARN, next_token=token, max_results=5)
        keys += [t.key for t in page]
        if token is None:
            break
    assert keys == [f"k{i:02d}" for i in range(12)]
    with pytest.raises(ValidationError, match="NextToken"):
        service.list_tags(ARN, next_token="not-a-token!")
    with pytest.raises(ValidationError, match="not a SageMaker resource ARN"):
        service.list_tags("arn:aws:s3:::bucket")


def test_model_package_versions_are_numbered_once_each_under_concurrent_registrations(db: Database) -> None:
    from shipyard.services.registry import ModelRegistry
    from shipyard.store import ResourceRepository
    from shipyard.store.pipelines import ModelPackageRepository

    registry = ModelRegistry(
        ResourceRepository(db, "model-package-group", "Model package group"),
        ModelPackageRepository(db),
        account_id="000000000000",
    )
    registry.create_group({"ModelPackageGroupName": "churn"}, region="us-east-1")
    request = {"ModelPackageGroupName": "churn", "InferenceSpecification": {"Containers": [{"Image": "i"}]}}
    barrier = threading.Barrier(4)

    def register() -> None:
        barrier.wait()
        for _ in range(3):
            registry.create_package(request, region="us-east-1")

    threads = [threading.Thread(target=register) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    packages, _ = registry.find_packages({"ModelPackageGroupName": "churn", "MaxResults": 100})
    assert sorted(p.version for p in packages) == list(range(1, 13))
    assert {p.approval for p in packages} == {"PendingManualApproval"}
    with pytest.raises(ValidationError, match="Model package group 'nope' does not exist"):
        registry.create_package({**request, "ModelPackageGroupName": "nope"}, region="us-east-1")


def test_a_pipeline_execution_keeps_its_steps(db: Database) -> None:
    import datetime as dt
    import json

    from shipyard.core.pipelines import Execution, ExecutionStatus, Pipeline, StepRun, StepStatus
    from shipyard.store.pipelines import PipelineRepository

    repo = PipelineRepository(db)
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    definition = json.dumps({"Version": "2020-12-01", "Steps": []})
    pipeline = repo.create(Pipeline("p", "arn:aws:sagemaker:us-east-1:0:pipeline/p", now, now, definition))
    run = StepRun(
        "train", "Training", StepStatus.EXECUTING, now, job={"kind": "Training", "name": "j", "arn": "a"}
    )
    execution = Execution(
        f"{pipeline.arn}/execution/abc",
        "p",
        pipeline.arn,
        now,
        ExecutionStatus.EXECUTING,
        definition,
        {"n": 3},
        now,
    )
    repo.add_execution(execution.with_step(run, now))
    done = dataclasses.replace(
        run,
        status=StepStatus.SUCCEEDED,
        ended=now,
        properties={"ModelArtifacts": {"S3ModelArtifacts": "s3://m"}},
    )
    repo.modify_execution(execution.arn, lambda e: e.with_step(done, now))
    loaded = repo.execution(execution.arn)
    assert loaded.steps["train"] == done
    assert loaded.parameters == {"n": 3}
    assert [e.arn for e in repo.active_executions()] == [execution.arn]
    assert repo.get("p").last_run == now
    with pytest.raises(ConflictError, match="running execution"):
        repo.delete("p")


def test_quotas_set_at_run_time_are_kept_by_subject(db: Database) -> None:
    quotas, now = QuotaRepository(db), dt.datetime.now(dt.UTC)
    quotas.put(Subject("user", "alice"), Limits(vcpus=4, gpus=0), now)
    quotas.put(Subject("group", "students"), Limits(endpoints=2), now)
    quotas.put(Subject("user", "alice"), Limits(vcpus=8), now)  # replaced, not added
    quotas.put(Subject("default"), Limits(), now)  # no limits at all, as set
    assert quotas.all() == {
        Subject("user", "alice"): Limits(vcpus=8),
        Subject("group", "students"): Limits(endpoints=2),
        Subject("default"): Limits(),
    }
    assert quotas.delete(Subject("user", "alice")) and not quotas.delete(Subject("user", "alice"))
    assert Subject("user", "alice") not in quotas.all()


def test_the_ledger_keeps_a_users_arn_whatever_its_path(db: Database) -> None:
    from decimal import Decimal

    from shipyard.core.costs import Interval
    from shipyard.store import UsageRepository

    owner = f"arn:aws:iam::000000000000:user/{'department/' * 40}alice"  # 450 characters
    usage, now = UsageRepository(db), dt.datetime.now(dt.UTC)
    usage.open(
        Interval(
            "training/j/1",
            "training",
            "j",
            ARN,
            "ml.m5.large",
            1,
            Decimal(1),
            Decimal(1),
            now,
            now,
            owner=owner,
        )
    )
    assert [i.owner for i in usage.for_resource("training", "j")] == [owner]
