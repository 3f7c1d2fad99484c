"""Processing jobs as the sagemaker SDK 2.x runs them: SKLearnProcessor and ScriptProcessor, unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests._titanic import numeric_csv

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
PREPROCESS = """
import argparse, os
parser = argparse.ArgumentParser()
parser.add_argument("--train-fraction", type=float, default=0.5)
args = parser.parse_args()
lines = open("/opt/ml/processing/input/titanic.csv").read().splitlines()
header, rows = lines[0], lines[1:]
cut = int(len(rows) * args.train_fraction)
for name, part in (("train", rows[:cut]), ("test", rows[cut:])):
    os.makedirs(f"/opt/ml/processing/{name}", exist_ok=True)
    open(f"/opt/ml/processing/{name}/{name}.csv", "w").write("\\n".join([header, *part]) + "\\n")
print(f"split {len(rows)} rows at {cut}")
"""


@pytest.fixture
def sagemaker_session(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    import sagemaker
    import sagemaker.session

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    boto_session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    yield sagemaker.Session(
        boto_session=boto_session,
        sagemaker_client=boto_client("sagemaker", server.url),
        default_bucket="sdk-processing",
    )


def _lines(s3: Any, uri: str) -> list[str]:
    bucket, key = uri[5:].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()


@pytest.mark.parametrize("kind", ["SKLearnProcessor", "ScriptProcessor"])
def test_sdk_processors_run_a_script_over_inputs_to_outputs(
    sagemaker_session: Any, server: ServerProcess, tmp_path: Path, kind: str
) -> None:
    from sagemaker.processing import ProcessingInput, ProcessingOutput, ScriptProcessor
    from sagemaker.sklearn.processing import SKLearnProcessor

    (tmp_path / "preprocess.py").write_text(PREPROCESS)
    (tmp_path / "titanic.csv").write_bytes(numeric_csv("train"))  # a local file: the SDK uploads it
    common: dict[str, Any] = {
        "role": ROLE,
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "sagemaker_session": sagemaker_session,
    }
    if kind == "SKLearnProcessor":
        processor: Any = SKLearnProcessor(framework_version="1.2-1", **common)
    else:
        from sagemaker import image_uris

        image = image_uris.retrieve("sklearn", "us-east-1", "1.2-1")
        processor = ScriptProcessor(image_uri=image, command=["python3"], **common)
    processor.run(
        code=str(tmp_path / "preprocess.py"),
        inputs=[
            ProcessingInput(source=str(tmp_path / "titanic.csv"), destination="/opt/ml/processing/input")
        ],
        outputs=[
            ProcessingOutput(output_name="train", source="/opt/ml/processing/train"),
            ProcessingOutput(output_name="test", source="/opt/ml/processing/test"),
        ],
        arguments=["--train-fraction", "0.75"],
        wait=True,
        logs=False,
    )
    description = processor.jobs[-1].describe()
    assert description["ProcessingJobStatus"] == "Completed", description.get("FailureReason")
    s3 = boto_client("s3", server.url)
    outputs = {
        o["OutputName"]: o["S3Output"]["S3Uri"] for o in description["ProcessingOutputConfig"]["Outputs"]
    }
    train, test = _lines(s3, outputs["train"] + "/train.csv"), _lines(s3, outputs["test"] + "/test.csv")
    rows = numeric_csv("train").decode().splitlines()
    assert train[0] == test[0] == rows[0]  # the header in both
    assert len(train) - 1 == int((len(rows) - 1) * 0.75) and len(train) + len(test) - 2 == len(rows) - 1


def test_sdk_framework_processor_with_source_dir_and_requirements(
    sagemaker_session: Any, server: ServerProcess, tmp_path: Path
) -> None:
    from sagemaker.processing import FrameworkProcessor, ProcessingInput, ProcessingOutput
    from sagemaker.sklearn.estimator import SKLearn

    source = tmp_path / "src"
    source.mkdir()
    (source / "requirements.txt").write_text("tabulate==0.9.0\n")  # not in the scikit-learn image
    (source / "helpers.py").write_text("def survived(rows):\n    return sum(r[0] == '1' for r in rows)\n")
    (source / "report.py").write_text(
        "import os, sys\n"
        "from tabulate import tabulate\n"
        "from helpers import survived\n"
        "rows = [l.split(',') for l in open('/opt/ml/processing/input/titanic.csv').read().splitlines()[1:]]\n"
        "os.makedirs('/opt/ml/processing/report', exist_ok=True)\n"
        "table = tabulate([[sys.argv[1], len(rows), survived(rows)]], headers=['split', 'passengers', 'survived'])\n"
        "open('/opt/ml/processing/report/report.txt', 'w').write(table + '\\n')\n"
    )
    (tmp_path / "titanic.csv").write_bytes(numeric_csv("train"))
    processor = FrameworkProcessor(
        estimator_cls=SKLearn,
        framework_version="1.2-1",
        role=ROLE,
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=sagemaker_session,
    )
    processor.run(
        code="report.py",
        source_dir=str(source),
        inputs=[
            ProcessingInput(source=str(tmp_path / "titanic.csv"), destination="/opt/ml/processing/input")
        ],
        outputs=[ProcessingOutput(output_name="report", source="/opt/ml/processing/report")],
        arguments=["train"],
        wait=True,
        logs=False,
    )
    description = processor.jobs[-1].describe()
    assert description["ProcessingJobStatus"] == "Completed", description.get("FailureReason")
    [output] = description["ProcessingOutputConfig"]["Outputs"]
    report = _lines(boto_client("s3", server.url), output["S3Output"]["S3Uri"] + "/report.txt")
    rows = numeric_csv("train").decode().splitlines()[1:]
    assert report[0].split() == ["split", "passengers", "survived"]
    assert report[2].split() == ["train", str(len(rows)), str(sum(r.startswith("1,") for r in rows))]


def test_sdk_pytorch_processor(sagemaker_session: Any, server: ServerProcess, tmp_path: Path) -> None:
    from sagemaker.processing import ProcessingOutput
    from sagemaker.pytorch.processing import PyTorchProcessor

    source = tmp_path / "src"
    source.mkdir()
    (source / "embed.py").write_text(
        "import os, torch\n"
        "torch.manual_seed(0)\n"
        "vectors = torch.nn.Embedding(10, 4)(torch.arange(10))\n"
        "os.makedirs('/opt/ml/processing/vectors', exist_ok=True)\n"
        "torch.save(vectors.detach(), '/opt/ml/processing/vectors/vectors.pt')\n"
        "open('/opt/ml/processing/vectors/shape.txt', 'w').write(f'{tuple(vectors.shape)} {torch.__version__}')\n"
    )
    processor = PyTorchProcessor(
        framework_version="2.1",
        py_version="py310",
        role=ROLE,
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=sagemaker_session,
    )
    processor.run(
        code="embed.py",
        source_dir=str(source),
        outputs=[ProcessingOutput(output_name="vectors", source="/opt/ml/processing/vectors")],
        wait=True,
        logs=False,
    )
    description = processor.jobs[-1].describe()
    assert description["ProcessingJobStatus"] == "Completed", description.get("FailureReason")
    [output] = description["ProcessingOutputConfig"]["Outputs"]
    [shape] = _lines(boto_client("s3", server.url), output["S3Output"]["S3Uri"] + "/shape.txt")
    assert shape.startswith("(10, 4) 2.")  # the CPU build of PyTorch this site provides
