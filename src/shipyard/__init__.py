"""Shipyard: a self-hosted machine-learning platform that speaks the SageMaker API.

``import shipyard`` gives the Python SDK (``shipyard.Estimator``, ``shipyard.connect``, ...),
loaded on first use so that the server and job agents, which import this package too, do not pay
for it.
"""

from typing import Any

__version__ = "0.1.0"

# shipyard.sdk.__all__, named here so that ``import shipyard`` stays cheap (a test keeps them equal)
_SDK = (
    "CSVSerializer",
    "Condition",
    "Connection",
    "Endpoint",
    "Estimator",
    "Input",
    "JSONSerializer",
    "Job",
    "Model",
    "NumpySerializer",
    "Parameter",
    "Pipeline",
    "PipelineRun",
    "Predictor",
    "ProcessingJob",
    "Processor",
    "Range",
    "RemoteCall",
    "RemoteError",
    "RemoteFunction",
    "Serializer",
    "StepResult",
    "TrainingJob",
    "TransformJob",
    "Transformer",
    "Tuner",
    "TuningJob",
    "choice",
    "connect",
    "costs",
    "instance_types",
    "integer",
    "loguniform",
    "pipelines",
    "remote",
    "uniform",
)

__all__ = ["__version__", *_SDK]


def __getattr__(name: str) -> Any:
    if name in _SDK:
        from shipyard import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'shipyard' has no attribute {name!r}")
