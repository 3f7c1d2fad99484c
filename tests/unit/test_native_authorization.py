"""The native API's authorization: every route amounts to an IAM action on a resource
(api/native/_authorization.py), decided as the AWS APIs decide; lists show what the caller may
see (over a real identity store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from shipyard.api.native import _authorization, create_native_app
from shipyard.api.native._authorization import (
    EVERYONE,
    ROUTES,
    Requirement,
    listing,
    owner_name,
    requirement,
)
from shipyard.core.credentials import Principal
from shipyard.core.policy import Policy
from shipyard.services.identity import IdentityService
from shipyard.store._db import Database
from shipyard.store.identity import IdentityRepository

ACCOUNT, REGION = "123456789012", "us-east-1"


class _Arns:
    """The ARNs a route names, as if nothing were stored yet (the names SageMaker gives)."""

    region, account = REGION, ACCOUNT

    def of(self, resource_type: str, name: str) -> str:
        return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{resource_type}/{name.lower()}"

    def package(self, group: str, version: str) -> str:
        return self.of("model-package", f"{group}/{version}")

    def log_streams(self, kind: str, name: str) -> str:
        group = {"training": "TrainingJobs"}[kind]
        return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/{group}:log-stream:{name}/*"


def _needed(method: str, path: str, function: str = "route", **params: str) -> Requirement | str:
    return requirement(method, path, function, params, _Arns())  # type: ignore[arg-type]


def test_the_table_names_the_apps_routes_and_only_waste_is_left_to_a_shipyard_action() -> None:
    doc = create_native_app().openapi()
    routes = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert set(ROUTES) - routes == set(), "an entry for a route that is gone"
    assert ("GET", "/api/v1/waste") in routes - set(ROUTES)  # every user's idle endpoints


JOB = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/alice-1"


@pytest.mark.parametrize(
    ("method", "path", "params", "expected"),
    [
        ("GET", "/api/v1/training-jobs/{name}", {"name": "Alice-1"},
         Requirement("sagemaker:DescribeTrainingJob", JOB, JOB)),
        ("GET", "/api/v1/jobs/{kind}/{name}", {"kind": "training", "name": "alice-1"},
         Requirement("sagemaker:DescribeTrainingJob", JOB, JOB)),
        ("POST", "/api/v1/jobs/{kind}/{name}/stop", {"kind": "training", "name": "alice-1"},
         Requirement("sagemaker:StopTrainingJob", JOB, JOB)),
        ("POST", "/api/v1/jobs/{kind}/{name}/stop", {"kind": "processing", "name": "p"},
         Requirement(
             "sagemaker:StopProcessingJob",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/p",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/p",
         )),
        ("GET", "/api/v1/jobs/{kind}", {"kind": "transform"}, Requirement("sagemaker:ListTransformJobs")),
        # a kind the route refuses by name: nothing to protect
        ("GET", "/api/v1/jobs/{kind}", {"kind": "nonsense"}, EVERYONE),
        # a job's log is the log service's, reached through its job
        ("GET", "/api/v1/jobs/{kind}/{name}/log", {"kind": "training", "name": "alice-1"},
         Requirement(
             "logs:GetLogEvents",
             f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:log-stream:alice-1/*",
             JOB,
         )),
        ("GET", "/api/v1/{collection}/{name}/utilization", {"collection": "endpoints", "name": "e"},
         Requirement(
             "sagemaker:DescribeEndpoint",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/e",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/e",
         )),
        ("POST", "/api/v1/tuning-jobs/{name}/stop", {"name": "t"},
         Requirement(
             "sagemaker:StopHyperParameterTuningJob",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/t",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/t",
         )),
        # a pipeline run is reached through its pipeline
        ("GET", "/api/v1/pipelines/{name}/executions/{execution_id}", {"name": "p", "execution_id": "x1"},
         Requirement(
             "sagemaker:DescribePipelineExecution",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/p/execution/x1",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/p",
         )),
        ("POST", "/api/v1/model-packages/{group}/{version}/approval", {"group": "g", "version": "2"},
         Requirement(
             "sagemaker:UpdateModelPackage",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g/2",
             f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g/2",
         )),
        ("GET", "/api/v1/costs", {}, Requirement("ce:GetCostAndUsage")),
        ("DELETE", "/api/v1/budgets/{name}", {"name": "lab"},
         Requirement("budgets:ModifyBudget", f"arn:aws:budgets::{ACCOUNT}:budget/lab")),
        ("GET", "/api/v1/alerts", {}, Requirement("budgets:ViewBudget")),
        # the server's own facts: every signed-in caller's
        ("GET", "/api/v1/whoami", {}, EVERYONE),
        ("GET", "/api/v1/instance-types", {}, EVERYONE),
        ("POST", "/api/v1/estimates", {}, EVERYONE),
    ],
)  # fmt: skip
def test_a_route_needs_the_action_aws_would(
    method: str, path: str, params: dict[str, str], expected: Any
) -> None:
    assert _needed(method, path, **params) == expected


def test_a_route_with_no_aws_equivalent_needs_a_shipyard_action_named_after_it() -> None:
    assert _needed("GET", "/api/v1/waste", "waste") == Requirement("shipyard:Waste")
    assert _needed("PUT", "/api/v1/quotas/{name}", "set_quota", name="x") == Requirement("shipyard:SetQuota")


def test_owners_are_named_by_their_user_name() -> None:
    assert owner_name("arn:aws:iam::123456789012:user/students/alice") == "alice"
    assert owner_name(None) is None


# -- lists: what the caller may see, paged and counted ----------------------------------------------
@pytest.fixture
def identity(tmp_path: Path, template_db: Path) -> Iterator[IdentityService]:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{path}")
    yield IdentityService(IdentityRepository(db, ACCOUNT), account_id=ACCOUNT, cache_seconds=0)
    db.dispose()


def _request(identity: IdentityService, principal: Principal) -> Request:
    platform = SimpleNamespace(identity=identity)
    app = SimpleNamespace(state=SimpleNamespace(platform=platform))
    return Request({"type": "http", "app": app, "state": {"principal": principal}, "headers": []})


def _user(identity: IdentityService, name: str, *documents: dict[str, Any]) -> Principal:
    user = identity.create_user(name)
    return Principal(user.arn, tuple(Policy.from_document(d) for d in documents), user=user.arn)


ALLOW_DESCRIBE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sagemaker:Describe*", "Resource": "*"}],
}


def test_a_list_pages_and_counts_what_the_caller_may_reach_and_describe(
    identity: IdentityService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_authorization, "CHUNK", 4)  # pages cross chunks
    deny_secret = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": "sagemaker:DescribeTrainingJob",
                "Resource": "arn:aws:sagemaker:*:*:training-job/secret-*",
            }
        ],
    }
    alice = _user(identity, "alice", ALLOW_DESCRIBE, deny_secret)
    bob = _user(identity, "bob", ALLOW_DESCRIBE)
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/"
    jobs = (
        [f"{arn}a{i}" for i in range(5)] + [f"{arn}b{i}" for i in range(5)] + [f"{arn}lab", f"{arn}secret-1"]
    )
    for job in jobs:
        owner = alice.user if "/a" in job or "secret" in job else bob.user if "/b" in job else None
        identity.claim_for(job, owner)
    newest_first = list(reversed(jobs))

    def fetch(offset: int, limit: int) -> list[str]:
        return newest_first[offset : offset + limit]

    def page(principal: Principal, offset: int, limit: int, owner: str | None = None) -> Any:
        request = _request(identity, principal)
        return listing(
            request,
            fetch,
            arn_of=str,
            action="sagemaker:DescribeTrainingJob",
            offset=offset,
            limit=limit,
            owner=owner,
        )

    first, second = page(alice, 0, 4), page(alice, 4, 4)
    assert first.total == second.total == 6  # her 5 and the lab's; not bob's, not the denied one
    assert [j.rsplit("/", 1)[1] for j in first.items + second.items] == ["lab", "a4", "a3", "a2", "a1", "a0"]
    assert first.owners == {f"{arn}lab": None, f"{arn}a4": "alice", f"{arn}a3": "alice", f"{arn}a2": "alice"}
    assert first.people == ["alice"]
    assert page(bob, 0, 10).total == 6  # his 5 and the lab's

    root = Principal.root(ACCOUNT)
    everyone = page(root, 0, 3)
    assert (everyone.items, everyone.total) == (newest_first[:3], None)  # the route counts it
    assert everyone.people == ["alice", "bob"]
    bobs = page(root, 1, 10, owner="BOB")  # names match as IAM's do, whatever their case
    assert (bobs.total, [j.rsplit("/", 1)[1] for j in bobs.items]) == (5, ["b3", "b2", "b1", "b0"])
