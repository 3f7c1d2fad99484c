"""Hostile files end to end, against a real server: archives that try to escape (as a training
job's sourcedir.tar.gz, a transform job's and an endpoint's model.tar.gz) fail clearly and write
nothing outside; links a job plants in what is uploaded (checkpoints, model, output data,
processing outputs, the failure file) are skipped and named in its log, never followed; a
ManifestFile entry that leaves its prefix fails the job before the input's folder is made."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests.integration.test_training import ROLE, SKLEARN_IMAGE
from tests.unit.test_archives import HOSTILE, VICTIM, Dirs, _tar

BUCKET = "hostile-files"
SECRET = b"HOST-SECRET-DO-NOT-UPLOAD"


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any, Any]:
    s3 = boto_client("s3", server.url)
    with contextlib.suppress(ClientError):
        s3.create_bucket(Bucket=BUCKET)
    return boto_client("sagemaker", server.url), s3, boto_client("logs", server.url)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A folder of the host's, next to nothing of the job's: a secret file, a victim, sentinels."""
    (tmp_path / "sentinel").mkdir()
    (tmp_path / "sentinel" / "victim").write_bytes(VICTIM)
    (tmp_path / "data-dir-evil").mkdir()
    (tmp_path / "secret").write_bytes(SECRET)
    return tmp_path


def _host_unchanged(host: Path) -> None:
    assert sorted(p.name for p in host.rglob("*")) == ["data-dir-evil", "secret", "sentinel", "victim"]
    assert (host / "sentinel" / "victim").read_bytes() == VICTIM
    assert (host / "sentinel" / "victim").stat().st_nlink == 1


def _nothing_next_to(target: Path) -> None:
    """The target's own folder holds nothing the archive aimed beside it (``../sentinel``, ...)."""
    for name in ("sentinel", "data-dir-evil", "escape", "evil"):
        assert not (target.parent / name).exists(), target.parent / name


def _hostile(shape: str, host: Path, target: Path) -> bytes:
    build = HOSTILE[shape][0]
    return _tar(build(Dirs(target.parent, target, host / "sentinel", host / "data-dir-evil")))


def _put(s3: Any, key: str, body: bytes) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def _training(sm: Any, name: str, source: str, **extra: Any) -> None:
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 120},
        **extra,
    )


def _until(describe: Any, status_key: str, running: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (found := describe())[status_key] in running:
        assert time.monotonic() < deadline, f"still {found[status_key]}"
        time.sleep(0.05)
    return found  # type: ignore[no-any-return]


def _log(logs: Any, group: str, name: str) -> list[str]:
    events = logs.filter_log_events(logGroupName=group, logStreamNamePrefix=f"{name}/")["events"]
    return [e["message"] for e in events]


def _refused(reason: str, shape: str, host: Path) -> None:
    """``reason`` names the member of the hostile ``shape`` and why it was refused."""
    member = HOSTILE[shape][1].replace("{sentinel}", str(host / "sentinel"))
    assert f"refused archive member {member!r}: " in reason, reason
    assert HOSTILE[shape][2] in reason, reason


# -- archives -------------------------------------------------------------------------------------
SOURCE_SHAPES = [
    "CVE-2025-4517 deep symlink and PATH_MAX chain",
    "relative symlink out",
    "absolute symlink",
    "hard link absolute",
    "PAX path override",
    "directory swap",
]


@pytest.mark.parametrize("shape", SOURCE_SHAPES)
def test_a_hostile_source_directory_fails_the_training_job_with_a_client_error(
    clients: tuple[Any, Any, Any], server: ServerProcess, host: Path, shape: str
) -> None:
    sm, s3, _ = clients
    name = f"hostile-{uuid.uuid4().hex[:10]}"
    code = server.data_dir / "jobs" / name / "attempt-0" / "algo-1" / "ml" / "code"
    source = _put(s3, f"code/{name}/sourcedir.tar.gz", _hostile(shape, host, code))
    _training(sm, name, source)
    job = _until(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus", ("InProgress",))
    assert job["TrainingJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert reason.startswith(f"ClientError: source directory {source}: "), reason
    _refused(reason, shape, host)
    assert str(server.data_dir) not in reason
    assert code.is_dir()  # the job's folder is where the test looked
    _nothing_next_to(code)
    _host_unchanged(host)


def test_a_hostile_model_fails_the_transform_job_and_the_endpoint_clearly(
    clients: tuple[Any, Any, Any], server: ServerProcess, host: Path
) -> None:
    sm, s3, _ = clients
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    shape = "hard link to a symlink"
    model = server.data_dir / "jobs" / "_transform" / name / "attempt-0" / "algo-1" / "ml" / "model"
    data = _put(s3, f"models/{name}/model.tar.gz", _hostile(shape, host, model))
    sm.create_model(
        ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": data}
    )
    source = _put(s3, f"transform-in/{name}/rows.csv", b"1,2,3,4\n")
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=name,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
            "ContentType": "text/csv",
        },
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/transform-out/{name}"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    job = _until(
        lambda: sm.describe_transform_job(TransformJobName=name), "TransformJobStatus", ("InProgress",)
    )
    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(f"ClientError: model data {data}: "), job["FailureReason"]
    _refused(job["FailureReason"], shape, host)

    shape = "sibling-prefix symlink"
    endpoint_model = f"{name}-ep"
    data = _put(s3, f"models/{endpoint_model}/model.tar.gz", _hostile(shape, host, host / "unused"))
    sm.create_model(
        ModelName=endpoint_model,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": data},
    )
    variant = {"VariantName": "AllTraffic", "ModelName": endpoint_model, "InitialInstanceCount": 1}
    sm.create_endpoint_config(
        EndpointConfigName=endpoint_model, ProductionVariants=[{**variant, "InstanceType": "ml.m5.large"}]
    )
    sm.create_endpoint(EndpointName=endpoint_model, EndpointConfigName=endpoint_model)
    endpoint = _until(
        lambda: sm.describe_endpoint(EndpointName=endpoint_model), "EndpointStatus", ("Creating",), 300
    )
    assert endpoint["EndpointStatus"] == "Failed"
    assert f"model data {data}: refused archive member " in endpoint["FailureReason"]
    _refused(endpoint["FailureReason"], shape, host)
    assert str(server.data_dir) not in endpoint["FailureReason"]
    for instance in (server.data_dir / "endpoints" / endpoint_model).glob("*/*/ml/model"):
        _nothing_next_to(instance)
    _host_unchanged(host)


# -- uploads --------------------------------------------------------------------------------------
PLANT = """
import os, sys
secret, host = {secret!r}, {host!r}
scratch = "/opt/ml/output/scratch.bin"
os.makedirs("/opt/ml/output", exist_ok=True)
open(scratch, "w").write("scratch")
for folder in {folders!r}:
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, "own.txt"), "w").write("mine")
    os.symlink(secret, os.path.join(folder, "leak"))
    os.symlink(host, os.path.join(folder, "hostdir"))
    os.link(scratch, os.path.join(folder, "hard"))
print("planted", flush=True)
"""


def _tar_members(s3: Any, key: str) -> dict[str, bytes]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _objects(s3: Any, prefix: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        o["Key"][len(prefix) :]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed
    }


def _skipped_lines(folder: str, links: int) -> list[str]:
    return [
        f"Shipyard: skipped {folder}/hard: a hard link ({links} names; the others may be outside the job's folder)",
        f"Shipyard: skipped {folder}/hostdir: a symbolic link",
        f"Shipyard: skipped {folder}/leak: a symbolic link",
    ]


def test_links_a_training_job_plants_are_skipped_in_checkpoints_model_and_output(
    clients: tuple[Any, Any, Any], host: Path
) -> None:
    sm, s3, logs = clients
    name = f"plant-{uuid.uuid4().hex[:10]}"
    folders = ["/opt/ml/checkpoints", "/opt/ml/model", "/opt/ml/output/data"]
    script = PLANT.format(secret=str(host / "secret"), host=str(host), folders=folders)
    source = _put(s3, f"code/{name}/sourcedir.tar.gz", _tar([(_info("train.py", script), script.encode())]))
    checkpoints = f"s3://{BUCKET}/checkpoints/{name}"
    _training(sm, name, source, CheckpointConfig={"S3Uri": checkpoints})
    job = _until(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus", ("InProgress",))
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _objects(s3, f"checkpoints/{name}/") == {"own.txt": b"mine"}
    assert _tar_members(s3, f"output/{name}/output/model.tar.gz") == {"own.txt": b"mine"}
    assert _tar_members(s3, f"output/{name}/output/output.tar.gz") == {"own.txt": b"mine"}
    lines = _log(logs, "/aws/sagemaker/TrainingJobs", name)
    for folder in folders:
        for line in _skipped_lines(folder, 4):
            assert line in lines, (line, [m for m in lines if m.startswith("Shipyard: ")])


def test_a_failure_file_linked_to_a_host_file_is_not_read(clients: tuple[Any, Any, Any], host: Path) -> None:
    sm, s3, _ = clients
    name = f"plant-{uuid.uuid4().hex[:10]}"
    script = f"import os, sys\nos.symlink({str(host / 'secret')!r}, '/opt/ml/output/failure')\nsys.exit(3)\n"
    source = _put(s3, f"code/{name}/sourcedir.tar.gz", _tar([(_info("train.py", script), script.encode())]))
    _training(sm, name, source)
    job = _until(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus", ("InProgress",))
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError: "), job["FailureReason"]
    assert SECRET.decode() not in job["FailureReason"]


def _info(name: str, text: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(text.encode())
    return info


def _processing(sm: Any, s3: Any, name: str, script: str, **kw: Any) -> None:
    code = _put(s3, f"code/{name}/run.py", script.encode())
    sm.create_processing_job(
        ProcessingJobName=name,
        RoleArn=ROLE,
        AppSpecification={
            "ImageUri": SKLEARN_IMAGE,
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/run.py"],
        },
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
        },
        ProcessingInputs=[
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": code,
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
            *kw.get("inputs", []),
        ],
        ProcessingOutputConfig={"Outputs": kw.get("outputs", [])},
        StoppingCondition={"MaxRuntimeInSeconds": 120},
    )


def test_links_a_processing_job_plants_in_its_outputs_are_skipped(
    clients: tuple[Any, Any, Any], host: Path
) -> None:
    sm, s3, logs = clients
    name = f"plant-{uuid.uuid4().hex[:10]}"
    folders = ["/opt/ml/processing/end", "/opt/ml/processing/continuous"]
    outputs = [
        {
            "OutputName": folder.rsplit("/", 1)[1],
            "S3Output": {
                "S3Uri": f"s3://{BUCKET}/processed/{name}/{folder.rsplit('/', 1)[1]}",
                "LocalPath": folder,
                "S3UploadMode": "Continuous" if folder.endswith("continuous") else "EndOfJob",
            },
        }
        for folder in folders
    ]
    script = PLANT.format(secret=str(host / "secret"), host=str(host), folders=folders)
    _processing(sm, s3, name, script, outputs=outputs)
    job = _until(
        lambda: sm.describe_processing_job(ProcessingJobName=name), "ProcessingJobStatus", ("InProgress",)
    )
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    lines = _log(logs, "/aws/sagemaker/ProcessingJobs", name)
    for folder in folders:
        assert _objects(s3, f"processed/{name}/{folder.rsplit('/', 1)[1]}/") == {"own.txt": b"mine"}
        for line in _skipped_lines(folder, 3):
            assert line in lines, (line, [m for m in lines if m.startswith("Shipyard: ")])


def test_a_manifest_entry_outside_its_prefix_fails_the_job_before_its_folder_is_made(
    clients: tuple[Any, Any, Any], server: ServerProcess, host: Path
) -> None:
    sm, s3, _ = clients
    name = f"manifest-{uuid.uuid4().hex[:8]}"
    _put(s3, f"data/{name}/ok.csv", b"1\n")
    entry = f"../../../../../..{host}/sentinel/evil"
    manifest = _put(
        s3,
        f"manifests/{name}.json",
        json.dumps([{"prefix": f"s3://{BUCKET}/data/{name}/"}, "ok.csv", entry]).encode(),
    )
    data_input = {
        "InputName": "data",
        "S3Input": {
            "S3Uri": manifest,
            "LocalPath": "/opt/ml/processing/input/data",
            "S3DataType": "ManifestFile",
            "S3InputMode": "File",
        },
    }
    _processing(sm, s3, name, "print('never runs')\n", inputs=[data_input])
    job = _until(
        lambda: sm.describe_processing_job(ProcessingJobName=name), "ProcessingJobStatus", ("InProgress",)
    )
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        f"ClientError: ManifestFile {manifest}: entry {entry!r} is not a path below the prefix (it is "
        "empty or absolute, or has a '..' part)"
    )
    instance = server.data_dir / "jobs" / "_processing" / name / "attempt-0" / "algo-1"
    assert instance.is_dir()
    assert not (instance / "ml" / "processing").exists()
    _host_unchanged(host)
