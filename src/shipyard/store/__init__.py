"""The metadata store: SQLAlchemy tables behind repositories that return core objects."""

from shipyard.store._db import Database
from shipyard.store.tags import TagRepository

__all__ = ["Database", "TagRepository"]
