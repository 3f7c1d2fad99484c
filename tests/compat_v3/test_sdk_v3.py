"""The sagemaker SDK v3 (3.27) unchanged: ModelTrainer, HyperparameterTuner, processors,
Transformer, ModelBuilder, a Pipeline and ``@remote``, each a v3 client script run in the v3 venv
(conftest.py) against the session's server. What they assert is what a v3 user sees: the job's
status, its outputs and what its code printed."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.compat_v3.conftest import ROLE, V3Runner

# Shared by the client scripts: a session on the server (the environment points boto3 at it), the
# role, a bucket, and a small CSV (label first, as the built-in XGBoost reads it) in it.
PRELUDE = f"""
import io, json, tarfile, time
import boto3
from sagemaker.core.helper.session_helper import Session
from sagemaker.core import image_uris

ROLE = "{ROLE}"
session = Session(default_bucket="sdk-v3")
bucket = session.default_bucket()
s3 = boto3.client("s3")
rows = "\\n".join(f"{{i % 2}},{{(i % 2) * 2 + (i % 7) / 10}},{{i % 5}}" for i in range(200)) + "\\n"
s3.put_object(Bucket=bucket, Key="data/train/train.csv", Body=rows.encode())
TRAIN = f"s3://{{bucket}}/data/train/"
"""


def _client(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


def _code(tmp_path: Path, files: dict[str, str]) -> None:
    """A source dir beside the client (never holding its data)."""
    folder = tmp_path / "code"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)


def test_model_trainer_runs_a_script_with_its_requirements(run_v3: V3Runner, tmp_path: Path) -> None:
    _code(
        tmp_path,
        {
            "train.py": (
                "import argparse, os, inflection\n"
                "parser = argparse.ArgumentParser(); parser.add_argument('--depth', type=int)\n"
                "args, _ = parser.parse_known_args()\n"
                "rows = open(os.path.join(os.environ['SM_CHANNEL_TRAIN'], 'train.csv')).read().splitlines()\n"
                "print('trained', inflection.camelize('model_trainer'), 'depth', args.depth, 'rows', len(rows))\n"
                "open('/opt/ml/model/model.txt', 'w').write('depth=%d' % args.depth)\n"
            ),
            "requirements.txt": "inflection==0.5.1\n",
        },
    )
    out = run_v3(
        _client(
            """
        from sagemaker.train.model_trainer import ModelTrainer
        from sagemaker.core.training.configs import Compute, InputData, SourceCode

        image = image_uris.retrieve("sklearn", region="us-east-1", version="1.2-1", instance_type="ml.m5.large")
        trainer = ModelTrainer(
            training_image=image,
            source_code=SourceCode(source_dir="code", entry_script="train.py", requirements="requirements.txt"),
            compute=Compute(instance_type="ml.m5.large", instance_count=1),
            hyperparameters={"depth": 3},
            role=ROLE,
            sagemaker_session=session,
            base_job_name="v3-script",
        )
        trainer.train(input_data_config=[InputData(channel_name="train", data_source=TRAIN)], wait=True, logs=False)
        job = trainer._latest_training_job
        job.refresh()
        print("STATUS", job.training_job_status)
        model = job.model_artifacts.s3_model_artifacts
        body = s3.get_object(Bucket=bucket, Key=model.split("/", 3)[3])["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            print("MODEL", tar.extractfile("model.txt").read().decode())
        logs = boto3.client("logs").filter_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=job.training_job_name
        )
        print("LOG", json.dumps([e["message"] for e in logs["events"]]))
        """
        )
    )
    assert "STATUS Completed" in out
    assert "MODEL depth=3" in out
    log = out.split("LOG ", 1)[1]
    assert "Successfully installed inflection-0.5.1" in log  # the SDK's driver ran pip in the job
    assert "trained ModelTrainer depth 3 rows 200" in log


def test_model_trainer_with_the_built_in_xgboost(run_v3: V3Runner) -> None:
    out = run_v3(
        _client(
            """
        from sagemaker.train.model_trainer import ModelTrainer
        from sagemaker.core.training.configs import Compute, InputData

        image = image_uris.retrieve("xgboost", region="us-east-1", version="1.7-1")
        trainer = ModelTrainer(
            training_image=image,
            compute=Compute(instance_type="ml.m5.large", instance_count=1),
            hyperparameters={"objective": "binary:logistic", "num_round": "5", "max_depth": "2"},
            role=ROLE,
            sagemaker_session=session,
            base_job_name="v3-xgb",
        )
        trainer.train(
            input_data_config=[InputData(channel_name="train", data_source=TRAIN, content_type="text/csv")],
            wait=True,
            logs=False,
        )
        job = trainer._latest_training_job
        job.refresh()
        print("STATUS", job.training_job_status, job.model_artifacts.s3_model_artifacts)
        """
        )
    )
    assert "STATUS Completed s3://sdk-v3/" in out


def test_remote_function_runs_with_the_clients_sdk(run_v3: V3Runner) -> None:
    out = run_v3(
        _client(
            """
        from sagemaker.core.remote_function import remote

        @remote(
            instance_type="ml.m5.large",
            role=ROLE,
            sagemaker_session=session,
            image_uri="236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-311:1.0",
        )
        def divide(a, b):
            import importlib.metadata
            import sagemaker.core  # what a function pickled by v3 needs in the job
            return a / b, importlib.metadata.version("sagemaker")

        print("RESULT", divide(6, 4))
        """
        )
    )
    assert "RESULT (1.5, '3.27.0')" in out
