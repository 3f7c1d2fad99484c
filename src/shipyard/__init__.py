"""Shipyard: a self-hosted machine-learning platform that speaks the SageMaker API."""

__version__ = "0.1.0"

__all__ = ["__version__"]
