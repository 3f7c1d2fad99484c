"""Orchestration: the platform's services, doing the I/O around decisions made in core/."""

from shipyard.services._platform import Platform
from shipyard.services._standalone import first_administrator, open_identity
from shipyard.services.tagging import TaggingService

__all__ = ["Platform", "TaggingService", "first_administrator", "open_identity"]
