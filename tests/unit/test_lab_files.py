"""The example policies docs/lab.md shows (deploy/policies/) parse and decide as the page says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shipyard.core.policy import Decision, Policy, evaluate

ROOT = Path(__file__).resolve().parents[2]
JOB = "arn:aws:sagemaker:us-east-1:000000000000:training-job/alice-xgb"
ENDPOINT = "arn:aws:sagemaker:us-east-1:000000000000:endpoint/alice-xgb"
ROLE = "arn:aws:iam::000000000000:role/ShipyardExecutionRole"


def _policy(name: str) -> Policy:
    return Policy.from_document((ROOT / "deploy" / "policies" / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("name", "action", "resource", "decision"),
    [
        ("student", "sagemaker:CreateTrainingJob", JOB, Decision.ALLOW),
        ("student", "s3:GetObject", "arn:aws:s3:::lab-datasets/titanic/train.csv", Decision.ALLOW),
        ("student", "s3:PutObject", "arn:aws:s3:::lab-datasets/titanic/train.csv", Decision.EXPLICIT_DENY),
        ("student", "s3:PutObject", "arn:aws:s3:::alice-scratch/model.tar.gz", Decision.ALLOW),
        ("student", "sagemaker:CreateEndpoint", ENDPOINT, Decision.EXPLICIT_DENY),
        ("student", "iam:PassRole", ROLE, Decision.ALLOW),
        ("student", "iam:PassRole", "arn:aws:iam::000000000000:role/PIsRole", Decision.IMPLICIT_DENY),
        ("student", "iam:CreateUser", "arn:aws:iam::000000000000:user/mallory", Decision.IMPLICIT_DENY),
        ("pi", "sagemaker:CreateEndpoint", ENDPOINT, Decision.ALLOW),
        ("pi", "iam:PassRole", "arn:aws:iam::000000000000:role/PIsRole", Decision.ALLOW),
        ("pi", "iam:ListUsers", "*", Decision.ALLOW),
        ("pi", "iam:CreateAccessKey", "arn:aws:iam::000000000000:user/alice", Decision.IMPLICIT_DENY),
    ],
)
def test_the_example_policies_decide_as_the_page_says(
    name: str, action: str, resource: str, decision: Decision
) -> None:
    assert evaluate([_policy(name)], action, resource) is decision


def test_the_page_shows_the_student_policy_as_shipped() -> None:
    page = (ROOT / "docs" / "lab.md").read_text()
    [shown] = [b for b in re.findall(r"```json\n(.*?)```", page, re.S) if '"TheirOwnWork"' in b]
    assert json.loads(shown) == json.loads((ROOT / "deploy" / "policies" / "student.json").read_text())
