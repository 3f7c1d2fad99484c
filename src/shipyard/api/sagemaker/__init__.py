"""The SageMaker protocol (AWS JSON 1.1, ``X-Amz-Target: SageMaker.<Operation>``)."""

from collections.abc import Collection

from shipyard.api._json import SAGEMAKER_ERRORS, JsonApi, Operation
from shipyard.api.sagemaker import _hosting, _pipelines, _processing, _tags, _training, _transform, _tuning
from shipyard.schema import ServiceSchema, sagemaker_enum_widening

OPERATIONS: dict[str, Operation] = {
    **_hosting.OPERATIONS,
    **_pipelines.OPERATIONS,
    **_processing.OPERATIONS,
    **_tags.OPERATIONS,
    **_training.OPERATIONS,
    **_transform.OPERATIONS,
    **_tuning.OPERATIONS,
}


def sagemaker_api(instance_types: Collection[str] = ()) -> JsonApi:
    # Instance types are enums in botocore's model; a site's own types (its catalog) are valid too.
    return JsonApi(
        "SageMaker",
        ServiceSchema.load("sagemaker"),
        OPERATIONS,
        SAGEMAKER_ERRORS,
        sagemaker_enum_widening(instance_types),
    )


__all__ = ["OPERATIONS", "sagemaker_api"]
