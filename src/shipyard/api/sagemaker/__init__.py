"""The SageMaker protocol (AWS JSON 1.1)."""

from shipyard.api.sagemaker._api import OPERATIONS, SageMakerApi, json_error

__all__ = ["OPERATIONS", "SageMakerApi", "json_error"]
