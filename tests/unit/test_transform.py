"""A transform job's spec: how many model server workers an instance runs."""

from __future__ import annotations

import pytest

from shipyard.core.transform import TransformJobSpec


def _spec(**request: object) -> TransformJobSpec:
    return TransformJobSpec.from_request(
        {
            "TransformJobName": "t",
            "ModelName": "m",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3Uri": "s3://b/in/"}}, "SplitType": "Line"},
            "TransformOutput": {"S3OutputPath": "s3://b/out"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            **request,
        }
    )


@pytest.mark.parametrize(
    ("concurrent", "cpus", "workers"),
    [
        (None, 2, 1),  # MaxConcurrentTransforms defaults to 1: one request at a time, one worker
        (2, 2, 2),
        (8, 2, 2),  # a worker per core
        (2, 16, 2),  # never more than requests in flight
        (4, 0.5, 1),  # a share of a core still runs one
        (3, 3.9, 3),
    ],
)
def test_a_worker_per_core_up_to_max_concurrent_transforms(
    concurrent: int | None, cpus: float, workers: int
) -> None:
    request = {} if concurrent is None else {"MaxConcurrentTransforms": concurrent}
    assert _spec(**request).model_servers(cpus) == workers
