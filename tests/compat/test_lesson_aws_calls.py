"""The lesson's other AWS calls through boto3 on one real server with ``auth = "on"``: IAM's
policy simulator as the users' policies decide, Cost Explorer's GetCostAndUsage and
GetCostForecast from the ledger (each user sees their own spend), EC2's DescribeInstances, and
the services Shipyard does not serve answering in their own protocols."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.core.costs import Interval
from shipyard.server import ServerProcess
from shipyard.services.identity import ADMIN_CREDENTIALS, read_credentials
from shipyard.store import UsageRepository
from shipyard.store._db import Database
from tests._support import boto_client

ACCOUNT = "000000000000"
TODAY = dt.datetime.now(dt.UTC).date()
YESTERDAY = TODAY - dt.timedelta(days=1)
Key = tuple[str, str]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("lesson-calls"), env={"SHIPYARD_AUTH": "on"}) as server:
        yield server


def _admin(server: ServerProcess) -> Key:
    key = read_credentials(server.data_dir / ADMIN_CREDENTIALS)
    assert key is not None
    return key


def _client(service: str, server: ServerProcess, key: Key) -> Any:
    return boto_client(service, server.url, aws_access_key_id=key[0], aws_secret_access_key=key[1])


def _user(server: ServerProcess, name: str, *statements: dict[str, Any]) -> Key:
    iam = _client("iam", server, _admin(server))
    iam.create_user(UserName=name)
    if statements:
        document = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
        iam.put_user_policy(UserName=name, PolicyName="grants", PolicyDocument=document)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


# -- IAM's policy simulator ----------------------------------------------------------------------
def test_simulate_principal_policy_decides_as_the_users_policies(lab: ServerProcess) -> None:
    dana = _user(
        lab,
        "dana",
        {"Effect": "Allow", "Action": ["sagemaker:*", "s3:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::shared/*"},
    )
    _user(lab, "erin")
    iam = _client("iam", lab, _admin(lab))
    answer = iam.simulate_principal_policy(
        PolicySourceArn=_arn("dana"),
        ActionNames=["sagemaker:CreateTrainingJob", "s3:DeleteObject", "iam:CreateUser"],
        ResourceArns=["arn:aws:s3:::shared/data.csv"],
    )
    decided = {r["EvalActionName"]: r for r in answer["EvaluationResults"]}
    assert {a: r["EvalDecision"] for a, r in decided.items()} == {
        "sagemaker:CreateTrainingJob": "allowed",
        "s3:DeleteObject": "explicitDeny",
        "iam:CreateUser": "implicitDeny",
    }
    assert decided["s3:DeleteObject"]["MatchedStatements"] == [
        {"SourcePolicyId": "grants", "SourcePolicyType": "user"}
    ]
    assert decided["s3:DeleteObject"]["EvalResourceName"] == "arn:aws:s3:::shared/data.csv"

    # A user may simulate itself (what ModelTrainer does at construction), not another user.
    own = _client("iam", lab, dana).simulate_principal_policy(
        PolicySourceArn=_arn("dana"), ActionNames=["sagemaker:CreateTrainingJob"]
    )
    assert own["EvaluationResults"][0]["EvalDecision"] == "allowed"
    with pytest.raises(ClientError) as refused:
        _client("iam", lab, dana).simulate_principal_policy(
            PolicySourceArn=_arn("erin"), ActionNames=["s3:GetObject"]
        )
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert "iam:SimulatePrincipalPolicy" in refused.value.response["Error"]["Message"]

    # The root and administrators: everything allowed. Nobody: NoSuchEntity.
    root = iam.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:root", ActionNames=["*:*"])
    assert root["EvaluationResults"][0]["EvalDecision"] == "allowed"
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.simulate_principal_policy(PolicySourceArn=_arn("nobody"), ActionNames=["s3:GetObject"])

    custom = iam.simulate_custom_policy(
        PolicyInputList=[json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"}]})],
        ActionNames=["s3:GetObject"],
        ResourceArns=["arn:aws:s3:::data/a", "arn:aws:s3:::other/a"],
    )  # fmt: skip
    assert [r["EvalDecision"] for r in custom["EvaluationResults"]] == ["allowed", "implicitDeny"]


# -- Cost Explorer -------------------------------------------------------------------------------
def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def spend(lab: ServerProcess) -> dict[str, Key]:
    """Yesterday's ledger: frank's 2 h of training on 2 ml.m5.large (tagged project=a), gina's 1 h
    endpoint, the lab's own 1 h of processing."""
    keys = {
        "frank": _user(lab, "frank", {"Effect": "Allow", "Action": "ce:Get*", "Resource": "*"}),
        "gina": _user(lab, "gina", {"Effect": "Allow", "Action": "ce:GetCostAndUsage", "Resource": "*"}),
    }
    usage = UsageRepository(Database(f"sqlite:///{lab.data_dir / 'shipyard.db'}"))
    rows = [
        ("training", "ml.m5.large", 2, "1.00", _at(YESTERDAY, 10), 2, _arn("frank"), {"project": "a"}),
        ("endpoint", "ml.t2.medium", 1, "0.50", _at(YESTERDAY, 12), 1, _arn("gina"), {}),
        ("processing", "ml.m5.large", 1, "1.00", _at(YESTERDAY, 14), 1, None, {"project": "b"}),
    ]
    for n, (kind, instance_type, count, price, started, hours, owner, tags) in enumerate(rows):
        key = f"seeded/{n}"
        usage.open(
            Interval(
                key, kind, f"res-{n}", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:{kind}/res-{n}", instance_type,
                count, Decimal(price), Decimal(price) * 2, started, started, owner=owner, tags=tags,
            )
        )  # fmt: skip
        usage.close(key, started + dt.timedelta(hours=hours))
    return keys


def _period(start: dt.date = YESTERDAY, end: dt.date = TODAY) -> dict[str, str]:
    return {"Start": start.isoformat(), "End": end.isoformat()}


def test_cost_and_usage_totals_groups_and_filters(lab: ServerProcess, spend: dict[str, Key]) -> None:
    ce = _client("ce", lab, _admin(lab))
    total = ce.get_cost_and_usage(
        TimePeriod=_period(),
        Granularity="DAILY",
        Metrics=["UnblendedCost", "UsageQuantity", "PublicOnDemandCost"],
    )["ResultsByTime"]
    assert len(total) == 1 and total[0]["TimePeriod"] == _period()
    assert total[0]["Total"]["UnblendedCost"] == {"Amount": "5.5", "Unit": "USD"}  # 4 + 0.5 + 1
    assert total[0]["Total"]["UsageQuantity"] == {"Amount": "6", "Unit": "Hrs"}
    assert total[0]["Total"]["PublicOnDemandCost"]["Amount"] == "11"

    by_type = ce.get_cost_and_usage(
        TimePeriod=_period(),
        Granularity="MONTHLY",
        Metrics=["BlendedCost"],
        GroupBy=[{"Type": "DIMENSION", "Key": "USAGE_TYPE"}, {"Type": "TAG", "Key": "project"}],
    )
    groups = {
        tuple(g["Keys"]): g["Metrics"]["BlendedCost"]["Amount"] for g in by_type["ResultsByTime"][0]["Groups"]
    }
    assert groups == {
        ("Train:ml.m5.large", "project$a"): "4",
        ("Processing:ml.m5.large", "project$b"): "1",
        ("Host:ml.t2.medium", "project$"): "0.5",
    }
    assert by_type["GroupDefinitions"][1] == {"Type": "TAG", "Key": "project"}

    filtered = ce.get_cost_and_usage(
        TimePeriod=_period(),
        Granularity="DAILY",
        Metrics=["UnblendedCost"],
        Filter={
            "And": [
                {"Dimensions": {"Key": "SERVICE", "Values": ["Amazon SageMaker"]}},
                {"Not": {"Tags": {"Key": "project", "Values": ["a"]}}},
            ]
        },
    )
    assert filtered["ResultsByTime"][0]["Total"]["UnblendedCost"]["Amount"] == "1.5"

    with pytest.raises(ClientError) as invalid:
        ce.get_cost_and_usage(TimePeriod=_period(), Granularity="HOURLY", Metrics=["UnblendedCost"])
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    assert "HOURLY" in invalid.value.response["Error"]["Message"]


def test_each_user_sees_their_own_spend_and_a_forecast(lab: ServerProcess, spend: dict[str, Key]) -> None:
    frank = _client("ce", lab, spend["frank"])
    own = frank.get_cost_and_usage(
        TimePeriod=_period(),
        Granularity="DAILY",
        Metrics=["UnblendedCost"],
        GroupBy=[{"Type": "DIMENSION", "Key": "INSTANCE_TYPE"}],
    )
    assert [
        (g["Keys"], g["Metrics"]["UnblendedCost"]["Amount"]) for g in own["ResultsByTime"][0]["Groups"]
    ] == [(["ml.m5.large"], "4")]
    # Spend of 4 USD since its first use yesterday at 10:00: the rate carried over tomorrow.
    tomorrow = TODAY + dt.timedelta(days=1)
    before = dt.datetime.now(dt.UTC)
    forecast = frank.get_cost_forecast(
        TimePeriod=_period(tomorrow, tomorrow + dt.timedelta(days=1)),
        Metric="UNBLENDED_COST",
        Granularity="DAILY",
    )
    after = dt.datetime.now(dt.UTC)

    def day_at_rate(now: dt.datetime) -> Decimal:
        return Decimal(4 * 86400) / Decimal((now - _at(YESTERDAY, 10)).total_seconds())

    mean = Decimal(forecast["Total"]["Amount"])
    assert forecast["Total"]["Unit"] == "USD"
    assert day_at_rate(after) - Decimal("0.000001") <= mean <= day_at_rate(before) + Decimal("0.000001")
    assert forecast["ForecastResultsByTime"][0]["MeanValue"] == forecast["Total"]["Amount"]
    with pytest.raises(ClientError) as past:
        frank.get_cost_forecast(TimePeriod=_period(), Metric="UNBLENDED_COST", Granularity="DAILY")
    assert "TimePeriod.Start" in past.value.response["Error"]["Message"]

    with pytest.raises(ClientError) as refused:  # gina may not forecast
        _client("ce", lab, spend["gina"]).get_cost_forecast(
            TimePeriod=_period(tomorrow, tomorrow + dt.timedelta(days=1)),
            Metric="UNBLENDED_COST",
            Granularity="DAILY",
        )
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ce:GetCostForecast" in refused.value.response["Error"]["Message"]


# -- EC2 and the services Shipyard does not serve ------------------------------------------------
def test_ec2_describe_instances_parses(lab: ServerProcess) -> None:
    ec2 = _client("ec2", lab, _admin(lab))
    assert ec2.describe_instances()["Reservations"] == []
    pages = list(ec2.get_paginator("describe_instances").paginate())
    assert [p["Reservations"] for p in pages] == [[]]
    with pytest.raises(ClientError) as missing:
        ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"])
    assert missing.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as other:
        ec2.describe_vpcs()
    assert other.value.response["Error"]["Code"] == "InvalidAction"
    assert "DescribeVpcs" in other.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("service", "call", "code"),
    [
        ("lambda", lambda c: c.list_functions(), "UnknownOperationException"),  # rest-json
        ("sns", lambda c: c.list_topics(), "InvalidAction"),  # query
        ("route53", lambda c: c.list_hosted_zones(), "InvalidAction"),  # rest-xml
        ("kinesis", lambda c: c.list_streams(), "UnknownOperationException"),  # json, no target served
    ],
)
def test_an_unserved_service_answers_in_its_own_protocol(
    lab: ServerProcess, service: str, call: Any, code: str
) -> None:
    with pytest.raises(ClientError) as exc:
        call(_client(service, lab, _admin(lab)))
    error = exc.value.response["Error"]
    assert error["Code"] == code and "does not serve" in error["Message"]
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_an_unserved_service_refuses_a_user_in_its_own_protocol(lab: ServerProcess) -> None:
    nobody = _user(lab, "hank")
    with pytest.raises(ClientError) as exc:
        _client("sns", lab, nobody).list_topics()
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as ec2:
        _client("ec2", lab, nobody).describe_instances()
    assert ec2.value.response["Error"]["Code"] == "AccessDenied"
    assert "ec2:DescribeInstances" in ec2.value.response["Error"]["Message"]


def test_a_notebooks_identity_may_do_everything_on_a_server_without_auth(server: ServerProcess) -> None:
    """What ModelTrainer asks at construction, as a notebook's code on a single-user server."""
    caller = boto_client("sts", server.url).get_caller_identity()["Arn"]
    answer = boto_client("iam", server.url).simulate_principal_policy(
        PolicySourceArn=caller, ActionNames=["sagemaker:CreateTrainingJob", "s3:GetObject"]
    )
    assert [r["EvalDecision"] for r in answer["EvaluationResults"]] == ["allowed", "allowed"]
