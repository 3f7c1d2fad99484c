"""IAM's policy simulator (core/simulation.py): decisions per action and resource, and the
policies whose statements decided them."""

from __future__ import annotations

from shipyard.core.policy import Decision, Policy
from shipyard.core.simulation import SourcePolicy, simulate

GRANTS = SourcePolicy(
    "grants",
    "user",
    Policy.from_document(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    ),
)
FENCE = SourcePolicy(
    "fence",
    "group",
    Policy.from_document(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::keep/*"}],
        }
    ),
)


def test_each_action_on_each_resource_with_the_policies_that_decided() -> None:
    results = simulate(
        [GRANTS, FENCE],
        ["s3:DeleteObject", "sagemaker:ListModels"],
        ["arn:aws:s3:::keep/a", "arn:aws:s3:::tmp/a"],
    )
    assert [(r.action, r.resource, r.decision, [m.policy_id for m in r.matched]) for r in results] == [
        ("s3:DeleteObject", "arn:aws:s3:::keep/a", Decision.EXPLICIT_DENY, ["fence"]),
        ("s3:DeleteObject", "arn:aws:s3:::tmp/a", Decision.ALLOW, ["grants"]),
        ("sagemaker:ListModels", "arn:aws:s3:::keep/a", Decision.IMPLICIT_DENY, []),
        ("sagemaker:ListModels", "arn:aws:s3:::tmp/a", Decision.IMPLICIT_DENY, []),
    ]


def test_an_administrator_is_allowed_everything_on_any_resource() -> None:
    results = simulate([FENCE], ["s3:DeleteObject"], [], administrator=True)
    assert [(r.resource, r.decision) for r in results] == [("*", Decision.ALLOW)]
