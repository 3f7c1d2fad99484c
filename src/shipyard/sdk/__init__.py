"""Shipyard's Python SDK: train, tune, process, serve and batch-score without AWS notions.

    import shipyard
    estimator = shipyard.Estimator("train.py", framework="xgboost", metrics={"auc": "auc=([0-9.]+)"})
    job = estimator.fit({"train": "train.csv"})
    job.metrics(); job.download_model("model/"); job.cost
    endpoint = job.deploy()
    endpoint.predict(rows); endpoint.delete()

    pipeline = shipyard.Pipeline("titanic", parameters={"rounds": 10})
    model = pipeline.step(train, pipeline.step(prepare, "titanic.csv"), pipeline.parameter("rounds"))
    pipeline.run(rounds=20).result(model)

The server is found by :func:`connect`: ``$SHIPYARD_URL``, else the embedded default (started in
the background when it is not running).
"""

from shipyard.sdk._conditions import Condition, Parameter, StepResult
from shipyard.sdk._connection import Connection, connect, costs, instance_types
from shipyard.sdk._hosting import (
    CSVSerializer,
    Endpoint,
    JSONSerializer,
    Model,
    NumpySerializer,
    Predictor,
    Serializer,
    Transformer,
    TransformJob,
)
from shipyard.sdk._jobs import Job
from shipyard.sdk._pipeline_runs import PipelineRun, pipelines
from shipyard.sdk._pipelines import Pipeline
from shipyard.sdk._processing import ProcessingJob, Processor
from shipyard.sdk._remote import RemoteCall, RemoteError, RemoteFunction, remote
from shipyard.sdk._training import Estimator, Input, TrainingJob
from shipyard.sdk._tuning import Range, Tuner, TuningJob, choice, integer, loguniform, uniform

__all__ = [
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
]
