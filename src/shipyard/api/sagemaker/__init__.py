"""The SageMaker protocol (AWS JSON 1.1, ``X-Amz-Target: SageMaker.<Operation>``)."""

from collections.abc import Collection

from shipyard.api._json import SAGEMAKER_ERRORS, JsonApi, Operation
from shipyard.api._schema import ServiceSchema
from shipyard.api.sagemaker import _hosting, _pipelines, _processing, _tags, _training, _transform, _tuning
from shipyard.api.sagemaker._pipelines import SageMakerSteps

OPERATIONS: dict[str, Operation] = {
    **_hosting.OPERATIONS,
    **_pipelines.OPERATIONS,
    **_processing.OPERATIONS,
    **_tags.OPERATIONS,
    **_training.OPERATIONS,
    **_transform.OPERATIONS,
    **_tuning.OPERATIONS,
}


# Instance types are enums in botocore's model; a site's own types (its instance catalog) are valid too.
INSTANCE_TYPE_SHAPES = (
    "TrainingInstanceType",
    "ProcessingInstanceType",
    "ProductionVariantInstanceType",
    "TransformInstanceType",
)


def sagemaker_api(instance_types: Collection[str] = ()) -> JsonApi:
    names = frozenset(instance_types)
    return JsonApi(
        "SageMaker",
        ServiceSchema.load("sagemaker"),
        OPERATIONS,
        SAGEMAKER_ERRORS,
        {shape: names for shape in INSTANCE_TYPE_SHAPES},
    )


__all__ = ["OPERATIONS", "SageMakerSteps", "sagemaker_api"]
