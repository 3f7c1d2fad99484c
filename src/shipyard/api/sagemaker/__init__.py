"""The SageMaker protocol (AWS JSON 1.1, ``X-Amz-Target: SageMaker.<Operation>``)."""

from collections.abc import Collection

from shipyard.api._body import SAGEMAKER_JSON_LIMIT
from shipyard.api._json import SAGEMAKER_ERRORS, JsonApi, Operation
from shipyard.api.sagemaker import (
    _experiments,
    _hosting,
    _inference_components,
    _lineage,
    _notebooks,
    _pipelines,
    _processing,
    _tags,
    _training,
    _transform,
    _tuning,
)
from shipyard.api.sagemaker._ownership import tags_checked
from shipyard.schema import ServiceSchema, sagemaker_enum_widening

OPERATIONS: dict[str, Operation] = {
    name: tags_checked(operation) if name.startswith("Create") else operation
    for name, operation in {
        **_hosting.OPERATIONS,
        **_inference_components.OPERATIONS,
        **_pipelines.OPERATIONS,
        **_processing.OPERATIONS,
        **_tags.OPERATIONS,
        **_training.OPERATIONS,
        **_transform.OPERATIONS,
        **_tuning.OPERATIONS,
        **_experiments.OPERATIONS,
        **_lineage.OPERATIONS,
        **_notebooks.OPERATIONS,
    }.items()
}
# A job's ExperimentConfig names an experiment, trial or run that must exist; its trial component joins them.
for _kind in ("Training", "Processing", "Transform"):
    OPERATIONS[f"Create{_kind}Job"] = _experiments.experiment_linked(
        OPERATIONS[f"Create{_kind}Job"], _kind.lower()
    )


def sagemaker_api(instance_types: Collection[str] = ()) -> JsonApi:
    # Instance types are enums in botocore's model; a site's own types (its catalog) are valid too.
    return JsonApi(
        "SageMaker",
        ServiceSchema.load("sagemaker"),
        OPERATIONS,
        SAGEMAKER_ERRORS,
        sagemaker_enum_widening(instance_types),
        max_body=SAGEMAKER_JSON_LIMIT,
    )


__all__ = ["OPERATIONS", "sagemaker_api"]
