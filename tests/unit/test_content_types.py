"""What an endpoint's model reads (core/content_types.py): the console's invoke box defaults to it."""

from __future__ import annotations

from shipyard.core.content_types import accepted, declared_by
from shipyard.envs import framework_of

XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def test_xgboost_reads_csv_first_and_a_framework_model_json() -> None:
    assert accepted(framework_of(XGBOOST))[0] == "text/csv"
    assert "text/libsvm" in accepted(framework_of(XGBOOST))
    assert accepted(framework_of(SKLEARN))[0] == "application/json"
    assert accepted(None)[0] == "application/json"  # the model server's default: scikit-learn's


def test_a_model_package_of_the_same_container_says_what_it_takes() -> None:
    mine = {
        "InferenceSpecification": {
            "Containers": [{"Image": SKLEARN, "ModelDataUrl": "s3://b/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv", "application/json"],
        }
    }
    other = {
        "InferenceSpecification": {
            "Containers": [{"Image": SKLEARN, "ModelDataUrl": "s3://b/other.tar.gz"}],
            "SupportedContentTypes": ["application/x-npy"],
        }
    }
    declared = declared_by([other, {}, mine], SKLEARN, "s3://b/model.tar.gz")
    assert declared == ("text/csv", "application/json")
    assert accepted("sklearn", declared) == ("text/csv", "application/json", "application/x-npy")
    assert declared_by([other], SKLEARN, "s3://b/model.tar.gz") == ()
