"""Orchestration: the platform's services, doing the I/O around decisions made in core/."""

from shipyard.services._platform import Platform
from shipyard.services.tagging import TaggingService

__all__ = ["Platform", "TaggingService"]
