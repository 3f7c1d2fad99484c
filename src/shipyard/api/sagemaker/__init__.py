"""The SageMaker protocol (AWS JSON 1.1, ``X-Amz-Target: SageMaker.<Operation>``)."""

from shipyard.api._json import SAGEMAKER_ERRORS, JsonApi, Operation
from shipyard.api._schema import ServiceSchema
from shipyard.api.sagemaker import _tags, _training, _tuning

OPERATIONS: dict[str, Operation] = {
    **_tags.OPERATIONS,
    **_training.OPERATIONS,
    **_tuning.OPERATIONS,
}


def sagemaker_api() -> JsonApi:
    return JsonApi("SageMaker", ServiceSchema.load("sagemaker"), OPERATIONS, SAGEMAKER_ERRORS)


__all__ = ["OPERATIONS", "sagemaker_api"]
