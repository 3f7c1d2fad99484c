"""IAM policy documents: parsing as IAM accepts them, and evaluation as IAM decides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shipyard.core.policy import ADMINISTRATOR, Decision, Policy, evaluate
from shipyard.errors import MalformedPolicyDocument

BUCKET = "arn:aws:s3:::data"


def _policy(*statements: dict[str, Any]) -> Policy:
    return Policy.from_document({"Version": "2012-10-17", "Statement": list(statements)})


def test_a_single_statement_object_and_json_text_parse_alike() -> None:
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"}
    one = Policy.from_document({"Version": "2012-10-17", "Statement": statement})
    text = Policy.from_document(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    assert one == text
    assert Policy.from_document(one.to_document()) == one
    assert evaluate([one], "s3:GetObject", f"{BUCKET}/a/b.csv") is Decision.ALLOW


def test_wildcards_star_and_question_mark() -> None:
    policy = _policy(
        {"Effect": "Allow", "Action": "s3:Get*", "Resource": [f"{BUCKET}/train/*", f"{BUCKET}/part-?.csv"]}
    )
    assert evaluate([policy], "s3:GetObject", f"{BUCKET}/train/x/y") is Decision.ALLOW
    assert evaluate([policy], "s3:GetBucketLocation", f"{BUCKET}/part-1.csv") is Decision.ALLOW
    assert evaluate([policy], "s3:GetObject", f"{BUCKET}/part-10.csv") is Decision.IMPLICIT_DENY
    assert evaluate([policy], "s3:PutObject", f"{BUCKET}/train/x") is Decision.IMPLICIT_DENY
    assert evaluate([policy], "s3:GetObject", f"{BUCKET}/other/x") is Decision.IMPLICIT_DENY


def test_actions_match_case_insensitively_and_resources_do_not() -> None:
    policy = _policy({"Effect": "Allow", "Action": "S3:getobject", "Resource": f"{BUCKET}/Train/*"})
    assert evaluate([policy], "s3:GetObject", f"{BUCKET}/Train/a").allowed
    assert not evaluate([policy], "s3:GetObject", f"{BUCKET}/train/a").allowed


def test_an_explicit_deny_wins_over_any_allow() -> None:
    allow_all = _policy({"Effect": "Allow", "Action": "*", "Resource": "*"})
    deny = _policy({"Effect": "Deny", "Action": "sagemaker:Delete*", "Resource": "*"})
    assert evaluate([allow_all, deny], "sagemaker:DeleteEndpoint", "*") is Decision.EXPLICIT_DENY
    assert evaluate([deny, allow_all], "sagemaker:DescribeEndpoint", "*") is Decision.ALLOW
    assert evaluate([deny], "sagemaker:DescribeEndpoint", "*") is Decision.IMPLICIT_DENY
    assert evaluate([], "s3:GetObject", "*") is Decision.IMPLICIT_DENY


def test_not_action_and_not_resource_cover_everything_else() -> None:
    policy = _policy(
        {"Effect": "Allow", "NotAction": ["iam:*", "sagemaker:Delete*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:*", "NotResource": [f"{BUCKET}/*", BUCKET]},
    )
    assert evaluate([policy], "sagemaker:CreateTrainingJob", "*").allowed
    assert evaluate([policy], "sagemaker:DeleteModel", "*") is Decision.IMPLICIT_DENY
    assert evaluate([policy], "iam:GetRole", "*") is Decision.IMPLICIT_DENY
    assert evaluate([policy], "s3:GetObject", f"{BUCKET}/a").allowed
    assert evaluate([policy], "s3:GetObject", "arn:aws:s3:::other/a") is Decision.EXPLICIT_DENY


def test_string_conditions_on_request_keys() -> None:
    policy = _policy(
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": BUCKET,
            "Condition": {"StringLike": {"s3:prefix": ["train/*", "code/"]}},
        },
        {
            "Effect": "Deny",
            "Action": "s3:ListBucket",
            "Resource": BUCKET,
            "Condition": {"StringEquals": {"S3:Prefix": "train/secret/"}},
        },
    )
    assert evaluate([policy], "s3:ListBucket", BUCKET, {"s3:prefix": "train/2024/"}).allowed
    assert evaluate([policy], "s3:ListBucket", BUCKET, {"s3:prefix": "code/"}).allowed
    assert (
        evaluate([policy], "s3:ListBucket", BUCKET, {"s3:prefix": "train/secret/"}) is Decision.EXPLICIT_DENY
    )
    assert evaluate([policy], "s3:ListBucket", BUCKET, {"s3:prefix": ""}) is Decision.IMPLICIT_DENY
    # A key the request lacks matches no positive operator: listing the whole bucket is refused.
    assert evaluate([policy], "s3:ListBucket", BUCKET) is Decision.IMPLICIT_DENY


def test_a_negated_condition_holds_when_the_key_is_absent() -> None:
    policy = _policy(
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": BUCKET,
            "Condition": {"StringNotLike": {"s3:prefix": "private/*"}},
        }
    )
    assert evaluate([policy], "s3:ListBucket", BUCKET).allowed
    assert evaluate([policy], "s3:ListBucket", BUCKET, {"s3:prefix": "public/"}).allowed
    assert not evaluate([policy], "s3:ListBucket", BUCKET, {"s3:prefix": "private/a"}).allowed


def test_the_administrator_may_do_anything() -> None:
    assert evaluate([ADMINISTRATOR], "sagemaker:DeleteEndpoint", "arn:aws:sagemaker:x").allowed


def test_statements_are_looked_up_by_service_without_losing_a_deny() -> None:
    # Statements naming s3, every service (*), or NotAction all decide an s3 action; ones naming
    # another service do not, whatever the case of the service or the order of the policies.
    allow_everything = _policy({"Effect": "Allow", "Action": "*", "Resource": "*"})
    deny_s3 = _policy(
        {"Effect": "Deny", "Action": ["S3:Delete*", "s3:PutObject"], "Resource": f"{BUCKET}/*"},
        {"Effect": "Allow", "Action": "logs:*", "Resource": "*"},
    )
    deny_but_logs = _policy({"Effect": "Deny", "NotAction": "logs:*", "Resource": f"{BUCKET}/locked/*"})
    policies = [allow_everything, deny_s3, deny_but_logs]
    assert evaluate(policies, "s3:DeleteObject", f"{BUCKET}/a") is Decision.EXPLICIT_DENY
    assert evaluate(policies, "S3:deleteobject", f"{BUCKET}/a") is Decision.EXPLICIT_DENY
    assert evaluate(policies, "s3:GetObject", f"{BUCKET}/locked/a") is Decision.EXPLICIT_DENY
    assert evaluate(policies, "s3:GetObject", f"{BUCKET}/a") is Decision.ALLOW
    assert evaluate(policies[1:], "logs:GetLogEvents", f"{BUCKET}/locked/a") is Decision.ALLOW
    # A name that is not ASCII matches as a case-insensitive regular expression would (long s is s).
    assert evaluate(policies, "\u017f3:DeleteObject", f"{BUCKET}/a") is Decision.EXPLICIT_DENY


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "the document must be a JSON object, got a list"),
        ("{not json", "the document is not JSON"),
        ({"Version": "2012-10-17"}, "the document has no Statement"),
        ({"Version": "2012-10-17", "Statement": []}, "Statement must be an object or a non-empty list"),
        ({"Version": "2020-01-01", "Statement": {}}, "Version '2020-01-01' is not a policy language version"),
        ({"Statement": {}, "Owner": "me"}, "unknown member 'Owner'"),
        (
            {"Statement": [{"Sid": "Read", "Effect": "allow", "Action": "s3:*", "Resource": "*"}]},
            "Statement 1 (Sid 'Read'): Effect must be 'Allow' or 'Deny', got 'allow'",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": "s3:*", "NotAction": "iam:*", "Resource": "*"}]},
            "Statement 1 must have exactly one of Action and NotAction",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": "s3:*"}]},
            "Statement 1 must have exactly one of Resource and NotResource",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": "GetObject", "Resource": "*"}]},
            "Statement 1: action 'GetObject' must be '*' or '<service>:<action>'",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]},
            "Statement 1: Action must be a string or a non-empty list of strings",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "data/*"}]},
            "Statement 1: resource 'data/*' must be '*' or an ARN",
        ),
        (
            {
                "Statement": [
                    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                    {
                        "Sid": "Recent",
                        "Effect": "Allow",
                        "Action": "s3:*",
                        "Resource": "*",
                        "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
                    },
                ]
            },
            "Statement 2 (Sid 'Recent'): condition operator 'DateGreaterThan' is not supported",
        ),
        (
            {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}]},
            "Statement 1: Principal belongs in resource-based policies",
        ),
        (
            {
                "Statement": [
                    {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::${aws:username}/*"}
                ]
            },
            "uses a policy variable",
        ),
        (
            {
                "Statement": [
                    {"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                    {"Sid": "A", "Effect": "Deny", "Action": "s3:*", "Resource": "*"},
                ]
            },
            "Sid 'A' is used by more than one statement",
        ),
    ],
)
def test_malformed_documents_are_refused_naming_what_is_wrong(document: Any, message: str) -> None:
    with pytest.raises(MalformedPolicyDocument) as raised:
        Policy.from_document(document)
    assert message in raised.value.message
    assert raised.value.field == "PolicyDocument"
