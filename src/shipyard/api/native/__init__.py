"""The native REST API under /api/v1 (FastAPI, OpenAPI at /api/v1/openapi.json)."""

from shipyard.api.native._app import create_native_app

__all__ = ["create_native_app"]
