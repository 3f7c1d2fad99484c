"""Shipyard's Python SDK: train (and more, as it grows) without AWS notions.

    import shipyard
    job = shipyard.Estimator("train.py", framework="sklearn", metrics={"accuracy": "acc=([0-9.]+)"}).fit("data.csv")
    job.metrics(); job.download_model("model/"); job.cost

The server is found by :func:`connect`: ``$SHIPYARD_URL``, else the embedded default (started in
the background when it is not running).
"""

from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._training import Estimator, Input, TrainingJob

__all__ = ["Connection", "Estimator", "Input", "TrainingJob", "connect"]
