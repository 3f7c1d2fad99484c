"""One end-to-end suite, run against each backend: the local one, a Ray cluster of a head and two
worker nodes started on this machine (with Ray's token authentication), and a real Slurm of two
nodes (test_backends_slurm.py, a module of its own so that it runs beside the others). Everything goes
through the SageMaker API with boto3: a script job, a two-instance PyTorch DDP job, distributed
built-in XGBoost on two instances, processing and batch transform, a tuning job two trials at a
time, an endpoint of two instances answering InvokeEndpoint, a server restart mid-job, and on Ray
a killed node, a restarted cluster, and instance types routed to Ray from a local server."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import ConfigurationError
from shipyard.server import ServerProcess
from tests._support import boto_client, tgz
from tests._titanic import numeric_csv
from tests.integration.test_builtin_xgboost import XGBOOST_IMAGE
from tests.integration.test_endpoints import IRIS
from tests.integration.test_endpoints import TRAIN as IRIS_TRAIN
from tests.integration.test_training import DDP_SCRIPT, PYTORCH_IMAGE, SKLEARN_IMAGE

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
BUCKET = "backend-tests"
NODE_LINE = re.compile(r"Shipyard: on (?:Ray|Slurm) node (\S+)")

pytestmark = pytest.mark.timeout(600)


class Site:
    """A server on one backend, with boto3 clients for it."""

    def __init__(self, backend: str, server: ServerProcess, cluster: Any = None) -> None:
        self.backend = backend
        self.server = server
        self.cluster = cluster
        self.sm = boto_client("sagemaker", server.url)
        self.s3 = boto_client("s3", server.url)
        self.logs = boto_client("logs", server.url)
        self.runtime = boto_client("sagemaker-runtime", server.url)
        self.s3.create_bucket(Bucket=BUCKET)

    def log_lines(self, job: str) -> dict[str, list[str]]:
        """Each instance's log lines (by host)."""
        group = "/aws/sagemaker/TrainingJobs"
        streams = self.logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job}/")[
            "logStreams"
        ]
        return {
            s["logStreamName"].split("/")[1].rsplit("-", 1)[0]: [
                e["message"]
                for e in self.logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"])[
                    "events"
                ]
            ]
            for s in streams
        }

    def nodes_of(self, job: str) -> dict[str, str]:
        """The Ray node each instance of ``job`` ran on, from its log."""
        found = {}
        for host, lines in self.log_lines(job).items():
            for line in lines:
                if match := NODE_LINE.match(line):
                    found[host] = match.group(1)
        return found


@pytest.fixture(scope="module", params=["local", "ray"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp(f"{request.param}-data")
    if request.param == "local":
        with ServerProcess(data_dir) as server:
            yield Site("local", server)
        return
    from shipyard.compute.ray._testing import RayCluster

    token = uuid.uuid4().hex + uuid.uuid4().hex  # the cluster requires Ray's token authentication
    with RayCluster(tmp_path_factory.mktemp("ray"), nodes=2, cpus=1, memory_gib=3, token=token) as cluster:
        args = ["--backend", "ray", "--ray-address", cluster.address]
        # Ray ends a process whose cluster is gone for this long (60 s by default): the bridge
        # process, so that a restarted cluster is found again sooner in the test.
        env = {"SHIPYARD_RAY_TOKEN": token, "RAY_gcs_rpc_server_reconnect_timeout_s": "5"}
        with ServerProcess(data_dir, extra_args=args, env=env) as server:
            yield Site("ray", server, cluster)


def _job(
    site: Site,
    script: str,
    *,
    count: int = 1,
    image: str = SKLEARN_IMAGE,
    instance_type: str = "ml.m5.large",
    max_runtime: int = 300,
) -> str:
    name = f"job-{uuid.uuid4().hex[:10]}"
    key = f"code/{name}.tar.gz"
    site.s3.put_object(Bucket=BUCKET, Key=key, Body=tgz({"train.py": script}))
    site.sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"s3://{BUCKET}/{key}"',
        },
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": max_runtime},
    )
    return name


def _started(site: Site, script: str) -> str:
    """A job of ``script`` (which prints "started" first), once its code has started."""
    name = _job(site, script, max_runtime=600)
    deadline = time.monotonic() + 120
    while "started" not in site.log_lines(name).get("algo-1", []):
        assert time.monotonic() < deadline, site.log_lines(name)
        time.sleep(0.1)
    return name


def _wait(
    site: Site, name: str, timeout: float = 300, until: tuple[str, ...] = ("Completed", "Failed", "Stopped")
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := site.sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] not in until:
        assert time.monotonic() < deadline, f"{name} still {job['TrainingJobStatus']} after {timeout} s"
        time.sleep(0.1)
    return job  # type: ignore[no-any-return]


SCRIPT = """
import json, os, socket
print("hello from", os.environ["SM_CURRENT_HOST"], json.loads(os.environ["SM_HOSTS"]))
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write("trained")
"""


def test_a_script_job_runs_and_uploads_its_model(site: Site) -> None:
    name = _job(site, SCRIPT)
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = site.log_lines(name)["algo-1"]
    assert "hello from algo-1 ['algo-1']" in lines
    uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    model = site.s3.get_object(Bucket=BUCKET, Key=uri.split(f"s3://{BUCKET}/", 1)[1])["Body"].read()
    assert len(model) > 0
    if site.cluster is not None:  # it ran on a cluster node, not beside the server
        assert site.nodes_of(name)["algo-1"].startswith("shipyard-node-")


def test_two_instance_ddp_spans_the_nodes(site: Site) -> None:
    name = _job(site, DDP_SCRIPT, count=2, image=PYTORCH_IMAGE)
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = site.log_lines(name)
    assert "rank 0 weights-equal True" in lines["algo-1"], lines["algo-1"][-20:]
    assert "rank 1 weights-equal True" in lines["algo-2"], lines["algo-2"][-20:]
    if site.cluster is not None:
        nodes = site.nodes_of(name)
        assert set(nodes) == {"algo-1", "algo-2"}
        assert nodes["algo-1"] != nodes["algo-2"], nodes


def test_distributed_builtin_xgboost_spans_the_nodes(site: Site) -> None:
    rows = numeric_csv("train", header=False).decode().splitlines()
    prefix = f"titanic-{uuid.uuid4().hex[:6]}"
    for part, chunk in enumerate((rows[:356], rows[356:])):
        site.s3.put_object(
            Bucket=BUCKET, Key=f"{prefix}/part-{part}.csv", Body="\n".join(chunk).encode() + b"\n"
        )
    name = f"xgb-{uuid.uuid4().hex[:8]}"
    site.sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"objective": "binary:logistic", "num_round": "20", "max_depth": "4"},
        InputDataConfig=[
            {
                "ChannelName": "train",
                "ContentType": "text/csv",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/{prefix}/",
                        "S3DataDistributionType": "ShardedByS3Key",
                    }
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = site.log_lines(name)
    for host in ("algo-1", "algo-2"):
        assert any("joined distributed training" in line for line in lines[host]), lines[host][-10:]
    if site.cluster is not None:
        nodes = site.nodes_of(name)
        assert nodes["algo-1"] != nodes["algo-2"], nodes


TRIAL = """
import argparse, time
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
args = parser.parse_args()
time.sleep(2)
print(f"score={-(args.lr - 3) ** 2}")
"""


def test_a_tuning_job_runs_two_trials_at_a_time(site: Site) -> None:
    name = f"tune-{uuid.uuid4().hex[:8]}"
    key = f"code/{name}.tar.gz"
    site.s3.put_object(Bucket=BUCKET, Key=key, Body=tgz({"train.py": TRIAL}))
    site.sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig={
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0", "MaxValue": "6"}]
            },
        },
        TrainingJobDefinition={
            "AlgorithmSpecification": {
                "TrainingImage": SKLEARN_IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "score", "Regex": "score=(-?[0-9.e-]+)"}],
            },
            "StaticHyperParameters": {
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": f'"s3://{BUCKET}/{key}"',
            },
            "RoleArn": ROLE,
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/tuning"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        },
    )
    deadline = time.monotonic() + 300
    while (tuning := site.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name))[
        "HyperParameterTuningJobStatus"
    ] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert tuning["HyperParameterTuningJobStatus"] == "Completed", tuning.get("FailureReason")
    assert tuning["TrainingJobStatusCounters"]["Completed"] == 4
    assert tuning["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"] == "score"
    trials = [
        site.sm.describe_training_job(TrainingJobName=t["TrainingJobName"])
        for t in site.sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
            "TrainingJobSummaries"
        ]
    ]
    if site.cluster is not None:  # one trial per node (of one CPU) at once
        spans = sorted((t["TrainingStartTime"], t["TrainingEndTime"]) for t in trials)
        assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), spans
        nodes = {site.nodes_of(t["TrainingJobName"])["algo-1"] for t in trials}
        assert nodes == {"shipyard-node-1", "shipyard-node-2"}


def _iris_model(site: Site) -> str:
    """A model trained by a training job on ``site``: its name."""
    name = _job(site, IRIS_TRAIN)
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    site.sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"]},
    )
    return name


PROCESS = """
import os
rows = open("/opt/ml/processing/input/data/iris.csv").read().splitlines()
os.makedirs("/opt/ml/processing/output", exist_ok=True)
open("/opt/ml/processing/output/count.txt", "w").write(f"{len(rows)} rows on {os.environ['STAGE']}")
"""


def test_processing_and_batch_transform_run(site: Site) -> None:
    prefix = f"data-{uuid.uuid4().hex[:6]}"
    site.s3.put_object(
        Bucket=BUCKET, Key=f"{prefix}/in/iris.csv", Body="".join(f"{','.join(map(str, r))}\n" for r in IRIS)
    )
    site.s3.put_object(Bucket=BUCKET, Key=f"{prefix}/code/process.py", Body=PROCESS)
    name = f"proc-{uuid.uuid4().hex[:8]}"
    s3_input = {"S3DataType": "S3Prefix", "S3InputMode": "File"}
    site.sm.create_processing_job(
        ProcessingJobName=name,
        RoleArn=ROLE,
        AppSpecification={
            "ImageUri": SKLEARN_IMAGE,
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/process.py"],
        },
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
        },
        ProcessingInputs=[
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/{prefix}/code/",
                    "LocalPath": "/opt/ml/processing/input/code",
                    **s3_input,
                },
            },
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/{prefix}/in/",
                    "LocalPath": "/opt/ml/processing/input/data",
                    **s3_input,
                },
            },
        ],
        ProcessingOutputConfig={
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {
                        "S3Uri": f"s3://{BUCKET}/{prefix}/processed",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        Environment={"STAGE": "test"},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    deadline = time.monotonic() + 300
    while (job := site.sm.describe_processing_job(ProcessingJobName=name))[
        "ProcessingJobStatus"
    ] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    count = site.s3.get_object(Bucket=BUCKET, Key=f"{prefix}/processed/count.txt")["Body"].read()
    assert count == b"2 rows on test"

    model = _iris_model(site)  # also the name of the training job: a transform job may share it
    site.sm.create_transform_job(
        TransformJobName=model,
        ModelName=model,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{prefix}/in/"}
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/{prefix}/scored", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    deadline = time.monotonic() + 300
    while (job := site.sm.describe_transform_job(TransformJobName=model))[
        "TransformJobStatus"
    ] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    keys = [o["Key"] for o in site.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/scored")["Contents"]]
    assert keys == [f"{prefix}/scored/iris.csv.out"]
    scored = site.s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read().decode()
    assert json.loads(scored) == [0, 2]  # one batch of two rows, answered in JSON


def test_an_endpoint_of_two_instances_answers(site: Site) -> None:
    name = _iris_model(site)
    site.sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 2,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    site.sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    try:
        deadline = time.monotonic() + 300
        while (endpoint := site.sm.describe_endpoint(EndpointName=name))["EndpointStatus"] == "Creating":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
        assert endpoint["ProductionVariants"][0]["CurrentInstanceCount"] == 2
        for _ in range(10):
            answer = site.runtime.invoke_endpoint(
                EndpointName=name, Body=json.dumps(IRIS), ContentType="application/json"
            )
            assert json.loads(answer["Body"].read()) == [0, 2]
        group = f"/aws/sagemaker/Endpoints/{name}"
        streams = site.logs.describe_log_streams(logGroupName=group)["logStreams"]
        assert len(streams) == 2
        if site.backend == "ray":  # spread over both workers
            nodes = set()
            for stream in streams:
                events = site.logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])
                nodes |= {m.group(1) for e in events["events"] if (m := NODE_LINE.match(e["message"]))}
            assert nodes == {"shipyard-node-1", "shipyard-node-2"}
    finally:
        site.sm.delete_endpoint(EndpointName=name)


RESTART = """
import os, time
print("started", flush=True)
for i in range(8):
    time.sleep(0.5)
    print(f"line {i}", flush=True)
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write("ok")
"""


def test_a_server_restart_mid_job_loses_nothing(site: Site) -> None:
    name = _started(site, RESTART)
    site.server.kill()  # a crash: the job runs on, and its instance keeps what it writes
    site.server.start(timeout=120)  # the same address: the instance reaches the object store there
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = [line for line in site.log_lines(name)["algo-1"] if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(8)]  # each once, in order
    key = job["ModelArtifacts"]["S3ModelArtifacts"].split(f"s3://{BUCKET}/", 1)[1]
    assert site.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0


def test_a_server_without_ray_leaves_ray_jobs_alone(site: Site) -> None:
    if site.backend != "ray":
        pytest.skip("needs a Ray cluster")
    name = _started(site, RESTART)
    site.server.stop()
    plain = ServerProcess(
        site.server.data_dir, port=site.server.port, log_path=site.server.data_dir / "plain.log"
    )
    with plain:  # the same data dir, started without the Ray settings
        deadline = time.monotonic() + 30
        while "not configured to use; it is not followed" not in plain.log_tail(50):
            assert time.monotonic() < deadline, plain.log_tail(20)
            time.sleep(0.1)
        assert site.sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress"
    site.server.start()  # with Ray again: the job is followed to its end
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert [line for line in site.log_lines(name)["algo-1"] if line.startswith("line ")] == [
        f"line {i}" for i in range(8)
    ]


SLEEPER = """
import time
print("started", flush=True)
time.sleep(600)
"""


def test_a_job_whose_node_dies_fails_naming_the_node(site: Site) -> None:
    if site.backend != "ray":
        pytest.skip("killing a node takes a cluster")
    name = _started(site, SLEEPER)
    node = site.nodes_of(name)["algo-1"]
    killed_at = dt.datetime.now(dt.UTC)
    site.cluster.kill_node(node)
    try:
        job = _wait(site, name, timeout=120)
        assert job["TrainingJobStatus"] == "Failed"
        assert f"algo-1 was lost: Ray node {node} (" in job["FailureReason"], job["FailureReason"]
        assert "died" in job["FailureReason"]
        assert job["TrainingEndTime"] >= killed_at
    finally:
        site.cluster.add_node(int(node.rsplit("-", 1)[1]))


def test_some_instance_types_on_ray_and_the_rest_local(site: Site, tmp_path: Path) -> None:
    if site.backend != "ray":
        pytest.skip("needs a Ray cluster")
    env = {"SHIPYARD_RAY_TOKEN": site.cluster.token, "SHIPYARD_RAY_INSTANCE_TYPES": "ml.c5.* ml.g4dn.*"}
    with ServerProcess(
        tmp_path / "data", extra_args=["--ray-address", site.cluster.address], env=env
    ) as server:
        mixed = Site("mixed", server)
        on_ray = _job(mixed, SCRIPT, instance_type="ml.c5.xlarge")
        local = _job(mixed, SCRIPT)
        for name in (on_ray, local):
            job = _wait(mixed, name)
            assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        assert mixed.nodes_of(on_ray)["algo-1"].startswith("shipyard-node-")
        assert mixed.nodes_of(local) == {}


def test_a_wrong_ray_token_stops_the_server_with_the_reason(site: Site, tmp_path: Path) -> None:
    if site.backend != "ray":
        pytest.skip("needs a Ray cluster")
    server = ServerProcess(
        tmp_path / "data",
        extra_args=["--backend", "ray", "--ray-address", site.cluster.address],
        env={"SHIPYARD_RAY_TOKEN": "not-the-token-" + "0" * 32},
    )
    with pytest.raises(ConfigurationError) as error:
        server.start(timeout=90)
    assert (
        f"Cannot connect to the Ray cluster at ray_address='{site.cluster.address}': "
        "it refused this server's token (ray_token, or $RAY_AUTH_TOKEN)"
    ) in str(error.value)


def test_a_ray_cluster_restart_leaves_the_server_serving(site: Site) -> None:
    if site.backend != "ray":
        pytest.skip("needs a Ray cluster")
    name = _started(site, SLEEPER)
    site.cluster.stop()  # every node, the head too: the job's actor is gone with them
    assert site.sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress"
    site.cluster.start()  # a new cluster at the same address
    job = _wait(site, name, timeout=120)
    assert job["TrainingJobStatus"] == "Failed"
    assert "algo-1 was lost: its Ray actor" in job["FailureReason"], job["FailureReason"]
    assert "no longer exists (the Ray cluster at" in job["FailureReason"]
    after = _wait(site, _job(site, SCRIPT), timeout=120)  # and new work runs on the new cluster
    assert after["TrainingJobStatus"] == "Completed", after.get("FailureReason")
    assert site.server.process is not None and site.server.process.poll() is None
