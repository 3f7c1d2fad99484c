"""The metadata store: SQLAlchemy tables behind repositories that return core objects."""

from shipyard.store._db import Database
from shipyard.store.jobs import (
    JobRepository,
    ProcessingJobNotFound,
    ProcessingJobRepository,
    TrainingJobNotFound,
    TrainingJobQuery,
    TrainingJobRepository,
    TransformJobNotFound,
    TransformJobRepository,
)
from shipyard.store.resources import Resource, ResourceRepository
from shipyard.store.tags import TagRepository
from shipyard.store.tuning import TuningJobNotFound, TuningJobRepository
from shipyard.store.usage import UsageRepository

__all__ = [
    "Database",
    "JobRepository",
    "ProcessingJobNotFound",
    "ProcessingJobRepository",
    "Resource",
    "ResourceRepository",
    "TagRepository",
    "TrainingJobNotFound",
    "TrainingJobQuery",
    "TrainingJobRepository",
    "TransformJobNotFound",
    "TransformJobRepository",
    "TuningJobNotFound",
    "TuningJobRepository",
    "UsageRepository",
]
