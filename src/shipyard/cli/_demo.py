"""``shipyard demo``: the quickstart on the embedded default, with real data.

A server starts on the data dir; the Titanic passenger lists go into its object store over the S3
API; a training job fits a random forest with an unchanged SageMaker script; a Bayesian tuning job
searches its depth and size, two trials at a time; the best model is deployed as an endpoint and
asked about passengers it never saw; what everything cost is shown; the endpoint is deleted and
the server stops. Everything goes through the SageMaker API with plain boto3.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from rich.console import Console

from shipyard.config import Settings
from shipyard.errors import ShipyardError
from shipyard.server import ServerProcess

BUCKET = "shipyard-quickstart"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::000000000000:role/ShipyardQuickstart"
FEATURES = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare"]


def _files() -> Any:
    return resources.files("shipyard.cli") / "quickstart"


def _wait(
    describe: Callable[[], dict[str, Any]], key: str, busy: tuple[str, ...], timeout: float = 900
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (found := describe())[key] in busy:
        if time.monotonic() > deadline:
            raise ShipyardError(f"Still {found[key]} after {timeout:.0f} s")
        time.sleep(0.2)
    return found


def _passengers(count: int) -> tuple[list[list[float]], list[str], list[int]]:
    """A few passengers from the held-out list: their features, names and fates."""
    import csv

    rows = list(csv.DictReader(io.StringIO((_files() / "titanic_test.csv").read_text())))[:count]
    features = [
        [
            float(r["Pclass"]),
            1.0 if r["Sex"] == "female" else 0.0,
            float(r["Age"] or 0),
            float(r["SibSp"]),
            float(r["Parch"]),
            float(r["Fare"] or 0),
        ]
        for r in rows
    ]
    return features, [r["Name"] for r in rows], [int(r["Survived"]) for r in rows]


def run_demo(settings: Settings) -> None:
    import boto3
    import httpx
    from botocore.config import Config

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]Shipyard quickstart[/] — data dir {settings.data_dir}")
    started = time.monotonic()
    server = ServerProcess(settings.data_dir, log_path=settings.data_dir / "demo-server.log")
    server.start()
    console.print(f"  server ready at {server.url} in {time.monotonic() - started:.2f} s")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        kw: dict[str, Any] = {
            "endpoint_url": server.url,
            "region_name": settings.region,
            "aws_access_key_id": "shipyard",
            "aws_secret_access_key": "shipyard",
            "config": Config(retries={"mode": "standard"}),
        }
        s3, sm, runtime = (boto3.client(s, **kw) for s in ("s3", "sagemaker", "sagemaker-runtime"))
        if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=BUCKET)
        for split in ("train", "test"):
            name = f"titanic_{split}.csv"
            s3.put_object(Bucket=BUCKET, Key=f"titanic/{split}/{name}", Body=(_files() / name).read_bytes())
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            script = (_files() / "titanic.py").read_bytes()
            info = tarfile.TarInfo("titanic.py")
            info.size = len(script)
            tar.addfile(info, io.BytesIO(script))
        s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=archive.getvalue())
        console.print(f"  uploaded the Titanic passenger lists and titanic.py to s3://{BUCKET}/")

        definition: dict[str, Any] = {
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": [
                    {"Name": "validation:accuracy", "Regex": "validation-accuracy=([0-9.]+)"}
                ],
            },
            "RoleArn": ROLE,
            "InputDataConfig": [
                {
                    "ChannelName": split,
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/titanic/{split}/"}
                    },
                }
                for split in ("train", "test")
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 900},
        }
        code = {
            "sagemaker_program": '"titanic.py"',
            "sagemaker_submit_directory": f'"s3://{BUCKET}/code/sourcedir.tar.gz"',
        }

        job = f"titanic-{stamp}"
        console.print("  training a random forest (the first job builds the scikit-learn environment) …")
        sm.create_training_job(
            TrainingJobName=job,
            HyperParameters={**code, "max-depth": "5", "n-estimators": "100"},
            **{k: v for k, v in definition.items() if k != "StaticHyperParameters"},
        )
        trained = _wait(
            lambda: sm.describe_training_job(TrainingJobName=job),
            "TrainingJobStatus",
            ("InProgress", "Stopping"),
        )
        if trained["TrainingJobStatus"] != "Completed":
            raise ShipyardError(
                f"Training job {job} {trained['TrainingJobStatus']}: {trained.get('FailureReason')}"
            )
        accuracy = {m["MetricName"]: m["Value"] for m in trained["FinalMetricDataList"]}[
            "validation:accuracy"
        ]
        seconds = (trained["TrainingEndTime"] - trained["TrainingStartTime"]).total_seconds()
        console.print(f"  training job {job}: held-out accuracy {accuracy:.3f}, {seconds:.1f} s")

        tuning = f"titanic-{stamp}"[:32]
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=tuning,
            HyperParameterTuningJobConfig={
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:accuracy"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2},
                "ParameterRanges": {
                    "IntegerParameterRanges": [
                        {"Name": "max-depth", "MinValue": "2", "MaxValue": "12"},
                        {
                            "Name": "n-estimators",
                            "MinValue": "10",
                            "MaxValue": "300",
                            "ScalingType": "Logarithmic",
                        },
                        {"Name": "min-samples-leaf", "MinValue": "1", "MaxValue": "10"},
                    ]
                },
            },
            TrainingJobDefinition={**definition, "StaticHyperParameters": code},
        )
        console.print("  tuning: 6 trials, 2 at a time, Bayesian search over depth, size and leaf size …")
        tuned = _wait(
            lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning),
            "HyperParameterTuningJobStatus",
            ("InProgress", "Stopping"),
        )
        best = tuned.get("BestTrainingJob")
        if tuned["HyperParameterTuningJobStatus"] != "Completed" or best is None:
            raise ShipyardError(
                f"Tuning job {tuning} {tuned['HyperParameterTuningJobStatus']}: {tuned.get('FailureReason')}"
            )
        took = (tuned["HyperParameterTuningEndTime"] - tuned["CreationTime"]).total_seconds()
        values = ", ".join(f"{k}={v}" for k, v in sorted(best["TunedHyperParameters"].items()))
        console.print(
            f"  tuning job {tuning}: best {best['FinalHyperParameterTuningJobObjectiveMetric']['Value']:.3f} "
            f"with {values} ({took:.1f} s for 6 trials)"
        )

        model_data = sm.describe_training_job(TrainingJobName=best["TrainingJobName"])["ModelArtifacts"][
            "S3ModelArtifacts"
        ]
        endpoint = f"titanic-{stamp}"
        sm.create_model(
            ModelName=endpoint,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={
                "Image": IMAGE,
                "ModelDataUrl": model_data,
                "Environment": {
                    "SAGEMAKER_PROGRAM": "titanic.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/code/sourcedir.tar.gz",
                },
            },
        )
        sm.create_endpoint_config(
            EndpointConfigName=endpoint,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": endpoint,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
        deploy_started = time.monotonic()
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)
        serving = _wait(lambda: sm.describe_endpoint(EndpointName=endpoint), "EndpointStatus", ("Creating",))
        if serving["EndpointStatus"] != "InService":
            raise ShipyardError(
                f"Endpoint {endpoint} {serving['EndpointStatus']}: {serving.get('FailureReason')}"
            )
        console.print(f"  endpoint {endpoint} in service in {time.monotonic() - deploy_started:.1f} s")
        rows, names, fates = _passengers(5)
        asked = time.perf_counter()
        answer = runtime.invoke_endpoint(
            EndpointName=endpoint, Body=json.dumps(rows), ContentType="application/json"
        )
        latency = (time.perf_counter() - asked) * 1000
        for name, fate, chance in zip(names, fates, json.loads(answer["Body"].read()), strict=True):
            console.print(f"    {name[:38]:38} survival {chance:5.1%}   ({'survived' if fate else 'died'})")
        console.print(f"  asked the endpoint about 5 passengers it never saw: {latency:.1f} ms")

        costs = [
            float(
                httpx.get(f"{server.url}/api/v1/training-jobs/{t['TrainingJobName']}").json().get("cost_usd")
                or 0
            )
            for t in sm.list_training_jobs_for_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=tuning, MaxResults=100
            )["TrainingJobSummaries"]
        ]
        first = float(httpx.get(f"{server.url}/api/v1/training-jobs/{job}").json().get("cost_usd") or 0)
        hosting = float(httpx.get(f"{server.url}/api/v1/endpoints/{endpoint}").json()["cost_usd"])
        console.print(
            f"  cost at SageMaker's ml.m5.large prices: training ${first:.6f}, tuning ${sum(costs):.6f}, "
            f"endpoint so far ${hosting:.6f}"
        )
        sm.delete_endpoint(EndpointName=endpoint)
        sm.delete_endpoint_config(EndpointConfigName=endpoint)
        sm.delete_model(ModelName=endpoint)
        console.print("  endpoint deleted")
    finally:
        exit_code = server.stop()
    if exit_code != 0:
        raise ShipyardError(f"The server exited with code {exit_code}:\n{server.log_tail()}")
    console.print(f"  server stopped cleanly; total {time.monotonic() - started:.1f} s")
    console.print(
        "[green]Quickstart complete.[/] Next: `shipyard server` and point boto3 or the "
        "sagemaker SDK at http://127.0.0.1:8300 (AWS_ENDPOINT_URL)"
    )
