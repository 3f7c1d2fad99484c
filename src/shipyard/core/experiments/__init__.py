"""SageMaker Experiments: entities, jobs as trial components, Search, metric series (pure)."""

from shipyard.core.experiments._entities import (
    DuplicateEntity,
    Entity,
    EntityKind,
    EntityNotFound,
    MetricStats,
    parameter_value,
)
from shipyard.core.experiments._jobs import (
    JOB_SOURCES,
    JobSource,
    job_component_name,
    job_of_component,
    job_of_source_arn,
    ownership_arn,
    processing_component,
    training_component,
    transform_component,
)
from shipyard.core.experiments._search import check_expression, matches, ordered, values_at
from shipyard.core.experiments._series import SeriesPoint, metric_query_result

__all__ = [
    "JOB_SOURCES",
    "DuplicateEntity",
    "Entity",
    "EntityKind",
    "EntityNotFound",
    "JobSource",
    "MetricStats",
    "SeriesPoint",
    "check_expression",
    "job_component_name",
    "job_of_component",
    "job_of_source_arn",
    "matches",
    "metric_query_result",
    "ordered",
    "ownership_arn",
    "parameter_value",
    "processing_component",
    "training_component",
    "transform_component",
    "values_at",
]
