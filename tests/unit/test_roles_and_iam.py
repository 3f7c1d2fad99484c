"""The pure parts of IAM and of passing roles: the roles a SageMaker request passes, the IAM
action and resource each IAM request needs, and the query protocol's form and XML as botocore
reads and writes them."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.model import ServiceModel
from botocore.parsers import QueryParser
from botocore.serialize import QuerySerializer

from shipyard.api._access import request_actions
from shipyard.api._iam import _page
from shipyard.api._query import _answer, decode
from shipyard.core.roles import RoleReference, could_not_assume, is_role_arn, passed_roles, pipeline_roles
from shipyard.errors import ValidationError
from shipyard.schema import ServiceSchema

ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/Trainer"
OTHER = f"arn:aws:iam::{ACCOUNT}:role/service-role/Other"


# -- the roles a request passes ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("CreateTrainingJob", {"RoleArn": ROLE}, [("RoleArn", ROLE)]),
        ("CreateProcessingJob", {"RoleArn": OTHER}, [("RoleArn", OTHER)]),
        ("CreateModel", {"ExecutionRoleArn": ROLE}, [("ExecutionRoleArn", ROLE)]),
        ("CreateModel", {}, []),
        (
            "CreateHyperParameterTuningJob",
            {
                "TrainingJobDefinition": {"RoleArn": ROLE},
                "TrainingJobDefinitions": [{"RoleArn": ROLE}, {"RoleArn": OTHER}],
            },
            [
                ("TrainingJobDefinition.RoleArn", ROLE),
                ("TrainingJobDefinitions[0].RoleArn", ROLE),
                ("TrainingJobDefinitions[1].RoleArn", OTHER),
            ],
        ),
        ("CreatePipeline", {"RoleArn": ROLE}, [("RoleArn", ROLE)]),
        ("UpdatePipeline", {"PipelineName": "p"}, []),
        (
            "StartPipelineExecution",
            {"PipelineParameters": [{"Name": "Role", "Value": OTHER}, {"Name": "Count", "Value": "2"}]},
            [("PipelineParameters[0].Value", OTHER)],
        ),
        # Not a role ARN, or not a string: the request's validation names it, not this.
        ("CreateTrainingJob", {"RoleArn": "my-role"}, []),
        ("CreateTrainingJob", {"RoleArn": 7}, []),
        ("CreateHyperParameterTuningJob", {"TrainingJobDefinitions": "x"}, []),
        ("DescribeTrainingJob", {"RoleArn": ROLE}, []),
    ],
)
def test_the_roles_each_operation_passes(
    operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert passed_roles(operation, params) == [RoleReference(m, a) for m, a in expected]


def test_a_pipeline_passes_its_steps_roles_and_its_role_parameters_defaults() -> None:
    train = {"Name": "Train", "Type": "Training", "Arguments": {"RoleArn": ROLE, "HyperParameters": {}}}
    from_parameter = {"Name": "Fit", "Type": "Training", "Arguments": {"RoleArn": {"Get": "Parameters.Role"}}}
    model = {"Name": "Model", "Type": "Model", "Arguments": {"ExecutionRoleArn": OTHER}}
    condition = {"Name": "Check", "Type": "Condition", "Arguments": {"IfSteps": [model], "ElseSteps": []}}
    definition = {
        "Version": "2020-12-01",
        "Parameters": [
            {"Name": "Role", "Type": "String", "DefaultValue": OTHER},
            {"Name": "Count", "Type": "Integer", "DefaultValue": 1},
        ],
        "Steps": [train, from_parameter, condition],
    }
    assert pipeline_roles(json.dumps(definition)) == [
        RoleReference("PipelineDefinition.Steps[0].Arguments.RoleArn", ROLE),
        RoleReference("PipelineDefinition.Steps[2].Arguments.IfSteps[0].Arguments.ExecutionRoleArn", OTHER),
        RoleReference("PipelineDefinition.Parameters[0].DefaultValue", OTHER),
    ]
    assert pipeline_roles("{not json") == [] and pipeline_roles("[1]") == []


def test_role_arns_and_the_words_for_one_that_does_not_exist() -> None:
    assert is_role_arn(ROLE) and is_role_arn(OTHER) and is_role_arn("arn:aws-cn:iam::1:role/x")
    for value in (
        None,
        1,
        "role/x",
        f"arn:aws:iam::{ACCOUNT}:user/x",
        f"arn:aws:iam::{ACCOUNT}:role/",
        "arn:aws:s3:::b",
    ):
        assert not is_role_arn(value), value
    message = could_not_assume(
        RoleReference("RoleArn", OTHER), recorded_arn=f"arn:aws:iam::{ACCOUNT}:role/Other"
    )
    assert message.startswith(f"Could not assume role {OTHER} (RoleArn)")
    assert f"recorded as arn:aws:iam::{ACCOUNT}:role/Other" in message
    assert "sagemaker.amazonaws.com" in message


# -- the IAM action and resource of each IAM request -----------------------------------------------
def _iam(body: dict[str, str], caller: str | None = None) -> list[tuple[str, str, bool]]:
    found = request_actions(
        "query",
        method="POST",
        path="/",
        query={},
        headers={},
        service="iam",
        body=urlencode(body).encode(),
        region="us-east-1",
        account=ACCOUNT,
        caller=caller,
    )
    return [(r.action, r.resource, r.own) for r in found]


ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"


@pytest.mark.parametrize(
    ("body", "caller", "expected"),
    [
        (
            {"Action": "CreateUser", "UserName": "bob"},
            ALICE,
            ("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/bob", False),
        ),
        (
            {"Action": "CreateUser", "UserName": "bob", "Path": "/students/"},
            None,
            ("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/students/bob", False),
        ),
        ({"Action": "GetUser"}, ALICE, ("iam:GetUser", ALICE, True)),
        ({"Action": "GetUser", "UserName": "alice"}, ALICE, ("iam:GetUser", ALICE, True)),
        (
            {"Action": "GetUser", "UserName": "bob"},
            ALICE,
            ("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:user/bob", False),
        ),
        ({"Action": "CreateAccessKey"}, ALICE, ("iam:CreateAccessKey", ALICE, False)),
        ({"Action": "ListUsers"}, ALICE, ("iam:ListUsers", "*", False)),
        (
            {"Action": "AddUserToGroup", "GroupName": "vision", "UserName": "bob"},
            ALICE,
            ("iam:AddUserToGroup", f"arn:aws:iam::{ACCOUNT}:group/vision", False),
        ),
        (
            {"Action": "PutRolePolicy", "RoleName": "Trainer", "PolicyName": "p"},
            ALICE,
            ("iam:PutRolePolicy", ROLE, False),
        ),
        # get_execution_role() of alice's key asks GetRole(alice): always hers to ask.
        (
            {"Action": "GetRole", "RoleName": "alice"},
            ALICE,
            ("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/alice", True),
        ),
        (
            {"Action": "GetRole", "RoleName": "alice"},
            None,
            ("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/alice", False),
        ),
        ({"Action": "DeleteUser", "UserName": "alice"}, ALICE, ("iam:DeleteUser", ALICE, False)),
        ({"Action": "ListRoles"}, None, ("iam:ListRoles", "*", False)),
    ],
)
def test_each_iam_request_needs_its_action_on_the_entity_it_names(
    body: dict[str, str], caller: str | None, expected: tuple[str, str, bool]
) -> None:
    assert _iam(body, caller) == [expected]


# -- the query protocol, as botocore writes requests and reads answers -------------------------------
def _model(service: str) -> ServiceModel:
    return ServiceSchema.load(service).model


def _form(operation: str, params: dict[str, Any]) -> dict[str, str]:
    model = _model("iam")
    body = QuerySerializer().serialize_to_request(params, model.operation_model(operation))["body"]
    return {k: str(v) for k, v in body.items()}


def test_a_form_decodes_by_the_input_shape_as_botocore_encoded_it() -> None:
    schema = ServiceSchema.load("iam")
    params = {
        "UserName": "bob",
        "Path": "/p/",
        "Tags": [{"Key": "team", "Value": "vision"}, {"Key": "k", "Value": ""}],
    }
    shape = schema.input_shape("CreateUser")
    assert shape is not None
    assert decode(shape, _form("CreateUser", params)) == params
    listed = schema.input_shape("ListUsers")
    assert listed is not None
    assert decode(listed, _form("ListUsers", {"MaxItems": 5, "Marker": "m"})) == {
        "MaxItems": 5,
        "Marker": "m",
    }
    # A value that does not convert is kept, and validation names it in AWS's words.
    kept = decode(listed, {"MaxItems": "five"})
    with pytest.raises(ValidationError, match="Value 'five' at 'maxItems' failed to satisfy constraint"):
        schema.validate_input("ListUsers", kept)


def test_an_answer_is_the_xml_botocore_reads() -> None:
    schema = ServiceSchema.load("iam")
    import datetime as dt

    created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    result = {
        "Users": [{"Path": "/", "UserName": "bob", "UserId": "AIDAX", "Arn": "arn:u", "CreateDate": created}],
        "IsTruncated": True,
        "Marker": "next",
    }
    response = _answer("iam", "ListUsers", schema.output_shape("ListUsers"), result, "req-1")
    operation = _model("iam").operation_model("ListUsers")
    parsed = QueryParser().parse(
        {"body": bytes(response.body), "headers": {}, "status_code": 200}, operation.output_shape
    )
    assert parsed["Users"] == result["Users"] and parsed["IsTruncated"] is True and parsed["Marker"] == "next"
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"


def test_pages_go_by_marker_and_a_foreign_marker_is_refused() -> None:
    items = list(range(5))
    first, more = _page(items, {"MaxItems": 2})
    assert first == [0, 1] and more["IsTruncated"] is True
    second, more = _page(items, {"MaxItems": 2, "Marker": more["Marker"]})
    third, last = _page(items, {"MaxItems": 2, "Marker": more["Marker"]})
    assert second == [2, 3] and third == [4] and last == {"IsTruncated": False}
    assert _page(items, {}) == (items, {"IsTruncated": False})
    with pytest.raises(ValidationError, match="Marker"):
        _page(items, {"Marker": "bm90LWEtdG9rZW4"})
