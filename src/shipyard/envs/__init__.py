"""Job environments ("images"): resolve a SageMaker image URI to a Python environment, build it
with uv into a content-addressed cache, and reuse it."""

from shipyard.envs._cache import (
    CachedEnvironment,
    EnvironmentBuildError,
    EnvironmentCache,
    PackageSources,
    ResolvedEnvironment,
    environment_roots,
    satisfied_here,
)
from shipyard.envs._images import EnvironmentSpec, ImageResolver, framework_of, model_builder_sdk_requirement

__all__ = [
    "CachedEnvironment",
    "EnvironmentBuildError",
    "EnvironmentCache",
    "EnvironmentSpec",
    "ImageResolver",
    "PackageSources",
    "ResolvedEnvironment",
    "environment_roots",
    "framework_of",
    "model_builder_sdk_requirement",
    "satisfied_here",
]
