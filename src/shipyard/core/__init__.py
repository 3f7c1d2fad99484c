"""The pure domain: values and decisions, no I/O and no framework imports."""

from shipyard.core.arn import Arn, sagemaker_arn
from shipyard.core.catalog import InstanceCatalog, InstanceType, JobKind
from shipyard.core.tags import Tag

__all__ = ["Arn", "InstanceCatalog", "InstanceType", "JobKind", "Tag", "sagemaker_arn"]
