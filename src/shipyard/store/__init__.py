"""The metadata store: SQLAlchemy tables behind repositories that return core objects."""

from shipyard.store._db import Database
from shipyard.store.tags import TagRepository
from shipyard.store.training import TrainingJobNotFound, TrainingJobQuery, TrainingJobRepository
from shipyard.store.tuning import TuningJobNotFound, TuningJobRepository

__all__ = [
    "Database",
    "TagRepository",
    "TrainingJobNotFound",
    "TrainingJobQuery",
    "TrainingJobRepository",
    "TuningJobNotFound",
    "TuningJobRepository",
]
