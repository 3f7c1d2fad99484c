"""The server's protocols: SageMaker, S3, STS/IAM and the native REST API, on one port."""

from shipyard.api.app import ShipyardApp, create_app

__all__ = ["ShipyardApp", "create_app"]
