"""Ownership's pure parts (what a request must reach, who may share), the identity service's
records and their cache, and share tags through the tagging service, on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.api._access import request_actions
from shipyard.api._ownership import Reach, may_share, reach_needed, share_change
from shipyard.core.credentials import Principal
from shipyard.core.identity import Ownership, is_lab_bucket, ownership_key
from shipyard.core.policy import NOTHING
from shipyard.core.tags import Tag
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services.identity import IdentityService, reaches
from shipyard.services.tagging import TaggingService
from shipyard.store import TagRepository
from shipyard.store._db import Database
from shipyard.store.identity import IdentityRepository

ACCOUNT = "000000000000"
REGION = "us-east-1"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"


def _sm(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


def _json_reach(operation: str, params: dict[str, Any], service: str = "SageMaker") -> list[Reach]:
    import json

    target = f"{service}.{operation}"
    body = json.dumps(params).encode()
    needed = request_actions(
        "json",
        method="POST",
        path="/",
        query={},
        headers={},
        target=target,
        body=body,
        region=REGION,
        account=ACCOUNT,
    )
    return reach_needed(needed, protocol="json", target=target, params=params, region=REGION, account=ACCOUNT)


def _s3_reach(method: str, path: str, query: dict[str, str] | None = None, **headers: str) -> list[Reach]:
    needed = request_actions(
        "s3", method=method, path=path, query=query or {}, headers=headers, region=REGION, account=ACCOUNT
    )
    return reach_needed(needed, protocol="s3", target="", params={}, region=REGION, account=ACCOUNT)


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        (
            "DescribeTrainingJob",
            {"TrainingJobName": "J"},
            [("sagemaker:DescribeTrainingJob", _sm("training-job", "j"))],
        ),
        (
            "StopTrainingJob",
            {"TrainingJobName": "j"},
            [("sagemaker:StopTrainingJob", _sm("training-job", "j"))],
        ),
        ("ListTrainingJobs", {}, []),  # names nothing: its answer is filtered
        ("CreateTrainingJob", {"TrainingJobName": "j"}, []),  # its own name: the create decides
        ("CreateModel", {"ModelName": "m"}, []),
        (
            "AddTags",
            {"ResourceArn": _sm("model", "m"), "Tags": []},
            [("sagemaker:AddTags", _sm("model", "m"))],
        ),
        (
            "CreateEndpoint",
            {"EndpointName": "e", "EndpointConfigName": "c"},
            [("sagemaker:CreateEndpoint", _sm("endpoint-config", "c"))],
        ),
        (
            "UpdateEndpoint",
            {"EndpointName": "e", "EndpointConfigName": "c"},
            [
                ("sagemaker:UpdateEndpoint", _sm("endpoint", "e")),
                ("sagemaker:UpdateEndpoint", _sm("endpoint-config", "c")),
            ],
        ),
        (
            "CreateEndpointConfig",
            {"EndpointConfigName": "c", "ProductionVariants": [{"ModelName": "a"}, {"ModelName": "b"}]},
            [
                ("sagemaker:CreateEndpointConfig", _sm("model", "a")),
                ("sagemaker:CreateEndpointConfig", _sm("model", "b")),
            ],
        ),
        (
            "CreateTransformJob",
            {"TransformJobName": "t", "ModelName": "m"},
            [("sagemaker:CreateTransformJob", _sm("model", "m"))],
        ),
        (
            "CreateModelPackage",
            {"ModelPackageGroupName": "g"},
            [("sagemaker:CreateModelPackage", _sm("model-package-group", "g"))],
        ),
        (
            "CreateHyperParameterTuningJob",
            {
                "HyperParameterTuningJobName": "t",
                "WarmStartConfig": {"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "p"}]},
            },
            [("sagemaker:CreateHyperParameterTuningJob", _sm("hyper-parameter-tuning-job", "p"))],
        ),
        (
            "DescribePipelineExecution",
            {"PipelineExecutionArn": _sm("pipeline", "p/execution/x")},
            [("sagemaker:DescribePipelineExecution", _sm("pipeline", "p/execution/x"))],
        ),
    ],
)
def test_a_sagemaker_request_must_reach_what_it_names_and_uses(
    operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert [(r.action, r.arn) for r in _json_reach(operation, params)] == expected


def test_an_s3_request_must_reach_its_buckets_a_create_its_own_name_left_to_the_create() -> None:
    assert [(r.action, r.resource, r.arn) for r in _s3_reach("GET", "/data/a/b.csv")] == [
        ("s3:GetObject", "arn:aws:s3:::data/a/b.csv", "arn:aws:s3:::data")
    ]
    assert [r.arn for r in _s3_reach("GET", "/data", {"list-type": "2"})] == ["arn:aws:s3:::data"]
    assert [r.arn for r in _s3_reach("PUT", "/data", {"tagging": ""})] == ["arn:aws:s3:::data"]
    assert _s3_reach("PUT", "/data") == []  # CreateBucket
    assert _s3_reach("GET", "/") == []  # ListBuckets: filtered
    copy = _s3_reach("PUT", "/mine/k", **{"x-amz-copy-source": "/theirs/secret"})
    assert [r.arn for r in copy] == ["arn:aws:s3:::mine", "arn:aws:s3:::theirs"]


def test_invoking_an_endpoint_and_reading_logs_reach_their_endpoint_or_job() -> None:
    needed = request_actions(
        "runtime",
        method="POST",
        path="/endpoints/Prod/invocations",
        query={},
        headers={},
        region=REGION,
        account=ACCOUNT,
    )
    reach = reach_needed(needed, protocol="runtime", target="", params={}, region=REGION, account=ACCOUNT)
    assert [(r.action, r.arn) for r in reach] == [("sagemaker:InvokeEndpoint", _sm("endpoint", "prod"))]
    group = "/aws/sagemaker/TrainingJobs"
    by_stream = _json_reach(
        "GetLogEvents", {"logGroupName": group, "logStreamName": "j1/algo-1-1"}, "Logs_20140328"
    )
    assert [(r.action, r.arn) for r in by_stream] == [("logs:GetLogEvents", _sm("training-job", "j1"))]
    by_prefix = _json_reach(
        "FilterLogEvents", {"logGroupName": group, "logStreamNamePrefix": "j2/"}, "Logs_20140328"
    )
    assert [r.arn for r in by_prefix] == [_sm("training-job", "j2")]
    listing = _json_reach("DescribeLogStreams", {"logGroupName": group}, "Logs_20140328")
    assert listing == []  # every job's streams: filtered stream by stream
    endpoint = _json_reach(
        "FilterLogEvents", {"logGroupName": "/aws/sagemaker/Endpoints/prod"}, "Logs_20140328"
    )
    assert [r.arn for r in endpoint] == [_sm("endpoint", "prod")]


def test_only_the_owner_or_an_administrator_may_share() -> None:
    arn = _sm("model", "m")
    share = share_change(
        "SageMaker.AddTags", {"ResourceArn": arn, "Tags": [{"Key": "shipyard:group", "Value": "g"}]}
    )
    assert share == Reach("sagemaker:AddTags", arn, arn)
    assert (
        share_change("SageMaker.AddTags", {"ResourceArn": arn, "Tags": [{"Key": "team", "Value": "g"}]})
        is None
    )
    assert (
        share_change("SageMaker.DeleteTags", {"ResourceArn": arn, "TagKeys": ["shipyard:group"]}) is not None
    )
    alice = Principal(ALICE, (NOTHING,), user=ALICE)
    bob = Principal(BOB, (NOTHING,), user=BOB, groups=("g",))
    shared = Ownership(arn, ALICE, "g")
    assert may_share(alice, shared) and not may_share(bob, shared)
    assert reaches(bob, shared) and not reaches(bob, Ownership(arn, ALICE))
    assert not may_share(bob, None)  # the lab's: the administrator's to share
    assert may_share(Principal.root(ACCOUNT), shared)


def test_ownership_keys_ignore_region_and_case_and_the_sdks_bucket_is_the_labs() -> None:
    assert ownership_key(_sm("training-job", "j")) == ownership_key(
        f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:training-job/J"
    )
    assert ownership_key("arn:aws:s3:::Data") == "arn:aws:s3:::Data"
    assert is_lab_bucket(f"sagemaker-us-east-1-{ACCOUNT}", ACCOUNT)
    assert not is_lab_bucket("sagemaker-data", ACCOUNT) and not is_lab_bucket(f"alice-{ACCOUNT}", ACCOUNT)


@pytest.fixture
def db(tmp_path: Path, template_db: Path) -> Iterator[Database]:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


def test_records_are_kept_and_this_servers_writes_seen_at_once(db: Database) -> None:
    identity = IdentityService(IdentityRepository(db, ACCOUNT), account_id=ACCOUNT, cache_seconds=3600)
    identity.create_user("alice")
    identity.create_user("boss", admin=True)
    identity.create_group("Students")
    job = _sm("training-job", "j")
    assert identity.owners_cached([job]) is None  # never read: the store must be asked
    assert identity.owners([job]) == {job: None}  # the lab's
    identity.claim_for(job, ALICE)
    # Kept, under any region's ARN for the same name.
    other_region = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:training-job/J"
    assert identity.owners_cached([other_region]) == {other_region: Ownership(other_region, ALICE)}
    bob = Principal(BOB, (NOTHING,), user=BOB, groups=("Students",))
    assert identity.reachable(bob, [job]) == {job: False}
    identity.share(job, "Students")
    assert identity.ownership([job]) == {job: Ownership(job, ALICE, "Students")}
    assert identity.reachable(bob, [job]) == {job: True}
    with pytest.raises(NotFoundError):
        identity.share(job, "nobody")
    identity.forget(job)
    assert identity.owners_cached([job]) == {job: None}
    # What an administrator makes is the lab's, as root's is.
    identity.claim_for(_sm("model", "m"), "arn:aws:iam::000000000000:user/boss")
    assert identity.ownership([_sm("model", "m")]) == {_sm("model", "m"): Ownership(_sm("model", "m"), None)}
    # Another server's writes are seen once the kept record is older than cache_seconds.
    identity.repository.claim(ownership_key(job), BOB)
    assert identity.owners([job])[job] is None
    fresh = IdentityService(IdentityRepository(db, ACCOUNT), account_id=ACCOUNT, cache_seconds=0)
    assert fresh.owners([job])[job] == Ownership(job, BOB)


class FakeSharing:
    def __init__(self, groups: set[str]) -> None:
        self.groups = groups
        self.shared: list[tuple[str, str | None]] = []

    def share(self, resource_arn: str, group: str | None) -> None:
        if group is not None and group not in self.groups:
            raise NotFoundError(f"The group with name {group} cannot be found.")
        self.shared.append((resource_arn, group))

    def group(self, name: str) -> object:
        if name not in self.groups:
            raise NotFoundError(f"The group with name {name} cannot be found.")
        return name


def test_the_share_tag_shares_and_an_unknown_group_changes_nothing(db: Database) -> None:
    sharing = FakeSharing({"students"})
    tagging = TaggingService(TagRepository(db), sharing=sharing)
    arn = _sm("model", "m")
    with pytest.raises(ValidationError, match="'nobody'") as unknown:
        tagging.add_tags(arn, [Tag("shipyard:group", "nobody"), Tag("team", "a")])
    assert unknown.value.value == "nobody"
    assert tagging.tags_of(arn) == [] and sharing.shared == []
    with pytest.raises(ValidationError, match="'nobody'"):
        tagging.check([Tag("shipyard:group", "nobody")])
    tagging.add_tags(arn, [Tag("shipyard:group", "students")])
    tagging.delete_tags(arn, ["shipyard:group"])
    assert sharing.shared == [(arn, "students"), (arn, None)]
    # A bucket's tag set, replaced whole: the share follows the tag, and only when it changes.
    bucket = "arn:aws:s3:::data"
    tagging.set_tags(bucket, [Tag("shipyard:group", "students"), Tag("project", "p")])
    tagging.set_tags(bucket, [Tag("shipyard:group", "students")])
    tagging.set_tags(bucket, [])
    assert sharing.shared[2:] == [(bucket, "students"), (bucket, None)]
    assert tagging.tags_of(bucket) == []
