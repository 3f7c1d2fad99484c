"""The Carpentries lesson "Intro to ML with AWS SageMaker" (carpentries-incubator/ML_with_AWS_SageMaker),
its notebooks' SageMaker, S3, IAM, Cost Explorer and EC2 calls as the lesson makes them — the same
SDK classes, arguments and order — in a notebook kernel configured for Shipyard (the exports of
`shipyard sagemaker-env` and `import shipyard.connector`; nothing else changed).

What is swapped: the data (the Titanic CSVs the tests ship, in the lesson's own file names), the
lesson's helper scripts (tests/compat/scripts/lesson, written for these tests to do what the
lesson's do), and for the RAG processing episode a tiny BERT made here, given to the job as an
input (the lesson downloads thenlper/gte-large and Qwen; nothing is downloaded at run time).
The episodes share one server, one bucket and the PyTorch model the training episode trains."""

from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests._titanic import DATA, numeric_csv

LESSON_SCRIPTS = Path(__file__).parent / "scripts" / "lesson"
BUCKET = "sinkorswim-doejohn-titanic"
NOTEBOOK = "sinkorswim-DoeJohn-TrainClassifier"
REGION = "us-east-2"
JOB_TAGS = [
    {"Key": "Name", "Value": "John Doe"},
    {"Key": "Project", "Value": "sinkorswim"},
    {"Key": "Purpose", "Value": "train_XGBoost"},
]


# -- The notebook: its environment, its working directory (the lesson's /home/ec2-user/SageMaker) --
@pytest.fixture(scope="module")
def kernel_env(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What `eval "$(shipyard sagemaker-env)"` sets, as a Shipyard notebook's kernel has it."""
    printed = subprocess.run(
        [sys.executable, "-m", "shipyard", "sagemaker-env", "--url", server.url,
         "--data-dir", str(tmp_path_factory.mktemp("lesson-client"))],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    exports = {}
    for line in printed.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        exports[name] = shlex.split(value)[0]
    return exports


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The notebook's folder: the lesson's data files, its AWS_helpers clone, Notes.txt."""
    home = tmp_path_factory.mktemp("SageMaker")
    shutil.copytree(LESSON_SCRIPTS, home / "AWS_helpers")
    for split in ("train", "test"):
        shutil.copy(DATA / f"titanic_{split}.csv", home / f"titanic_{split}.csv")
    (home / "Notes.txt").write_text("Notes from the workshop\n")
    return home


@pytest.fixture(autouse=True)
def notebook(
    _isolated_home: None, kernel_env: dict[str, str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    for name, value in kernel_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    monkeypatch.chdir(workdir)
    monkeypatch.syspath_prepend(str(workdir))
    import shipyard.connector  # noqa: F401 - the kernel's one line for Shipyard

    yield workdir


@pytest.fixture(scope="module")
def titanic_bucket(kernel_env: dict[str, str]) -> str:
    """The bucket the S3 episode makes in the console, with the lesson's two CSVs and its tags."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=kernel_env["AWS_ENDPOINT_URL"], region_name=REGION,
                      aws_access_key_id=kernel_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=kernel_env["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    for split in ("train", "test"):
        s3.put_object(
            Bucket=BUCKET, Key=f"titanic_{split}.csv", Body=(DATA / f"titanic_{split}.csv").read_bytes()
        )
    s3.put_bucket_tagging(
        Bucket=BUCKET, Tagging={"TagSet": [{"Key": t["Key"], "Value": t["Value"]} for t in JOB_TAGS[:2]]}
    )
    return BUCKET


def _session() -> Any:
    import boto3
    import sagemaker

    boto_session = boto3.Session(region_name=REGION)
    return sagemaker.Session(boto_session=boto_session)


# -- Episode: Accessing and managing data in S3 with SageMaker notebooks ---------------------------
def test_s3_episode(titanic_bucket: str, notebook: Path) -> None:
    import boto3
    import pandas as pd
    import sagemaker

    role = sagemaker.get_execution_role()
    session = sagemaker.Session()
    s3 = boto3.client("s3")
    assert ":role/" in role
    assert BUCKET in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    assert session.boto_region_name

    train_data = pd.read_csv(s3.get_object(Bucket=BUCKET, Key="titanic_train.csv")["Body"])
    test_data = pd.read_csv(s3.get_object(Bucket=BUCKET, Key="titanic_test.csv")["Body"])
    assert train_data.shape == (712, 12) and test_data.shape == (179, 12)

    s3.download_file(BUCKET, "titanic_train.csv", str(notebook / "downloaded_train.csv"))
    assert (notebook / "downloaded_train.csv").read_bytes() == (DATA / "titanic_train.csv").read_bytes()

    total_size_bytes = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            total_size_bytes += obj["Size"]
    expected = sum((DATA / f"titanic_{s}.csv").stat().st_size for s in ("train", "test"))
    assert total_size_bytes == expected

    s3.upload_file("Notes.txt", BUCKET, "docs/Notes.txt")
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert "docs/Notes.txt" in keys and "titanic_train.csv" in keys

    # The tags the storage episode puts on the bucket for cost tracking.
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags == {"Name": "John Doe", "Project": "sinkorswim"}


# -- Episode: Training models in SageMaker (XGBoost) -----------------------------------------------
def test_xgboost_script_mode_1_5_1(
    titanic_bucket: str, notebook: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    import sagemaker
    from sagemaker.inputs import TrainingInput
    from sagemaker.xgboost.estimator import XGBoost

    role = sagemaker.get_execution_role()
    s3 = boto3.client("s3")
    session = _session()
    output_folder = "xgboost"
    xgboost_estimator = XGBoost(
        base_job_name=NOTEBOOK,
        max_run=2 * 60 * 60,
        entry_point="train_xgboost.py",
        source_dir="AWS_helpers",
        role=role,
        tags=JOB_TAGS,
        instance_count=1,
        instance_type="ml.m5.large",
        output_path=f"s3://{BUCKET}/{output_folder}/",
        sagemaker_session=session,
        framework_version="1.5-1",
        hyperparameters={
            "train": "titanic_train.csv",
            "max_depth": 3,
            "eta": 0.1,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "num_round": 100,
        },
    )
    train_input = TrainingInput(f"s3://{BUCKET}/titanic_train.csv", content_type="csv")
    xgboost_estimator.fit({"train": train_input})
    printed = capsys.readouterr().out
    assert "Train size: (569, 7)" in printed and "xgboost 1.5." in printed

    job_name = xgboost_estimator.latest_training_job.name
    assert job_name.startswith(NOTEBOOK)
    model_s3_path = f"{output_folder}/{job_name}/output/model.tar.gz"
    s3.download_file(BUCKET, model_s3_path, "model.tar.gz")
    with tarfile.open("model.tar.gz") as tar:
        assert tar.getnames() == ["xgboost-model"]
        pickled = tar.extractfile("xgboost-model").read()  # type: ignore[union-attr]
    # joblib's pickle of a Booster, what the lesson's notebook loads with joblib.load
    assert pickled[:1] == b"\x80" and b"xgboost.core" in pickled and b"Booster" in pickled
    described = session.sagemaker_client.describe_training_job(TrainingJobName=job_name)
    assert described["StoppingCondition"]["MaxRuntimeInSeconds"] == 7200
    tags = session.sagemaker_client.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}.items() >= {t["Key"]: t["Value"] for t in JOB_TAGS}.items()


def test_xgboost_builtin_1_5_1_on_one_then_two_instances(
    titanic_bucket: str, notebook: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    import sagemaker
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput

    role = sagemaker.get_execution_role()
    session = _session()
    # The built-in algorithm reads label-first numeric CSV without a header: the data swapped in.
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key="titanic_train_numeric.csv", Body=numeric_csv("train", header=False)
    )
    train_s3_path = f"s3://{BUCKET}/titanic_train_numeric.csv"
    xgboost_estimator = Estimator(
        base_job_name=NOTEBOOK,
        max_run=2 * 60 * 60,
        image_uri=sagemaker.image_uris.retrieve("xgboost", session.boto_region_name, version="1.5-1"),
        role=role,
        tags=JOB_TAGS,
        instance_count=1,
        instance_type="ml.m5.large",
        output_path=f"s3://{BUCKET}/xgboost/",
        sagemaker_session=session,
    )
    xgboost_estimator.set_hyperparameters(
        max_depth=5, eta=0.1, subsample=0.8, colsample_bytree=0.8, num_round=20
    )
    train_input = TrainingInput(train_s3_path, content_type="csv")
    xgboost_estimator.fit({"train": train_input})
    first = xgboost_estimator.latest_training_job.describe()
    assert "joined distributed training" not in capsys.readouterr().out
    xgboost_estimator.instance_count = 2
    xgboost_estimator.fit({"train": train_input})
    second = xgboost_estimator.latest_training_job.describe()
    printed = capsys.readouterr().out  # both hosts' logs, as the SDK tails them
    assert "algo-1: joined distributed training of 2 hosts" in printed
    assert "algo-2: joined distributed training of 2 hosts" in printed
    assert first["TrainingJobStatus"] == second["TrainingJobStatus"] == "Completed"
    assert first["TrainingJobName"] != second["TrainingJobName"]
    assert (first["ResourceConfig"]["InstanceCount"], second["ResourceConfig"]["InstanceCount"]) == (1, 2)
    assert second["ModelArtifacts"]["S3ModelArtifacts"].startswith(f"s3://{BUCKET}/xgboost/")


# -- Episode: Training models in SageMaker (PyTorch) -----------------------------------------------
def _prepare_npz() -> None:
    """The lesson's local preparation (label-encode, fill, standardise, 80/20 split), in numpy."""
    import numpy as np
    import pandas as pd

    df = pd.read_csv("titanic_train.csv")
    df["Sex"] = (df["Sex"] == "male").astype(int)
    df["Embarked"] = df["Embarked"].fillna("S").map({"C": 0, "Q": 1, "S": 2})
    df["Age"] = df["Age"].fillna(df["Age"].median())
    df["Fare"] = df["Fare"].fillna(df["Fare"].median())
    X = df[["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked"]].to_numpy(dtype=float)
    y = df["Survived"].to_numpy()
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    order = np.random.default_rng(42).permutation(len(X))
    cut = int(len(X) * 0.8)
    np.savez("train_data.npz", X_train=X[order[:cut]], y_train=y[order[:cut]])
    np.savez("val_data.npz", X_val=X[order[cut:]], y_val=y[order[cut:]])


@pytest.fixture(scope="module")
def npz_inputs(titanic_bucket: str, kernel_env: dict[str, str], workdir: Path) -> tuple[str, str]:
    import boto3

    with pytest.MonkeyPatch.context() as mp:
        for name, value in kernel_env.items():
            mp.setenv(name, value)
        mp.chdir(workdir)
        _prepare_npz()
        s3 = boto3.client("s3")
        s3.upload_file("train_data.npz", BUCKET, "train_data.npz")
        s3.upload_file("val_data.npz", BUCKET, "val_data.npz")
    return f"s3://{BUCKET}/train_data.npz", f"s3://{BUCKET}/val_data.npz"


HYPERPARAMETERS = {
    "train": "/opt/ml/input/data/train/train_data.npz",
    "val": "/opt/ml/input/data/val/val_data.npz",
}


def _lesson_pytorch(
    instance_type: str, instance_count: int, npz_inputs: tuple[str, str], *, epochs: int = 1000
) -> Any:
    """The episode's PyTorch estimator on ``instance_type`` x ``instance_count``, fitted."""
    import sagemaker
    from sagemaker.inputs import TrainingInput
    from sagemaker.pytorch import PyTorch

    role = sagemaker.get_execution_role()
    session = _session()
    pytorch_estimator = PyTorch(
        base_job_name=NOTEBOOK,
        max_run=2 * 60 * 60,
        entry_point="AWS_helpers/train_nn.py",
        role=role,
        instance_type=instance_type,
        instance_count=instance_count,
        framework_version="1.9",
        py_version="py38",
        output_path=f"s3://{BUCKET}/output_nn/",
        sagemaker_session=session,
        hyperparameters={**HYPERPARAMETERS, "epochs": epochs, "learning_rate": 0.001},
    )
    train_input = TrainingInput(npz_inputs[0], content_type="application/x-npz")
    val_input = TrainingInput(npz_inputs[1], content_type="application/x-npz")
    pytorch_estimator.fit({"train": train_input, "val": val_input})
    return pytorch_estimator


def test_pytorch_1_9_estimator_on_cpu_gpu_and_two_instances(
    npz_inputs: tuple[str, str], notebook: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytorch_estimator = _lesson_pytorch("ml.m5.large", 1, npz_inputs)
    printed = capsys.readouterr().out
    assert "Epoch [1000/1000]" in printed and "scikit-learn " in printed  # as in AWS's container
    accuracies = [
        float(line.split("= ")[1]) for line in printed.splitlines() if "validation:accuracy = " in line
    ]
    assert len(accuracies) == 10 and accuracies[-1] > 0.7
    model_data = pytorch_estimator.model_data
    assert model_data.startswith(f"s3://{BUCKET}/output_nn/{pytorch_estimator.latest_training_job.name}/")

    # The GPU instance the episode tries next (no GPU here: the script falls back to the CPU); it
    # and the two instances train as long as the first run did there, shorter here: the instance
    # type and count are what these runs show.
    gpu = _lesson_pytorch("ml.g4dn.xlarge", 1, npz_inputs, epochs=100).latest_training_job.describe()
    assert (gpu["TrainingJobStatus"], gpu["ResourceConfig"]["InstanceType"]) == (
        "Completed",
        "ml.g4dn.xlarge",
    )
    capsys.readouterr()

    # Two instances: each trains the whole script (no distribution asked for), as the lesson shows.
    two = _lesson_pytorch("ml.m5.xlarge", 2, npz_inputs, epochs=100)
    assert capsys.readouterr().out.count("Epoch [100/100]") == 2
    described = two.latest_training_job.describe()
    assert (described["TrainingJobStatus"], described["ResourceConfig"]["InstanceCount"]) == ("Completed", 2)


# -- Episode: Hyperparameter tuning ------------------------------------------------------------------
def test_hyperparameter_tuning_episode(npz_inputs: tuple[str, str], notebook: Path) -> None:
    import boto3
    import numpy as np
    import sagemaker
    import torch
    from sagemaker.inputs import TrainingInput
    from sagemaker.pytorch import PyTorch
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner

    role = sagemaker.get_execution_role()
    session = _session()
    metric_definitions = [{"Name": "validation:accuracy", "Regex": "validation:accuracy = ([0-9\\.]+)"}]
    pytorch_estimator = PyTorch(
        base_job_name=NOTEBOOK,
        max_run=2 * 60 * 60,
        entry_point="AWS_helpers/train_nn.py",
        role=role,
        tags=JOB_TAGS,
        instance_count=1,
        instance_type="ml.m5.large",
        framework_version="1.9",
        py_version="py38",
        metric_definitions=metric_definitions,
        hyperparameters={**HYPERPARAMETERS, "epochs": 100, "learning_rate": 0.001},
        sagemaker_session=session,
    )
    hyperparameter_ranges = {
        "epochs": CategoricalParameter([100, 200, 300]),  # the lesson's 100, 1000, 10000, made short
        "learning_rate": ContinuousParameter(0.001, 0.1),
    }
    tune_job_tags = [*JOB_TAGS[:2], {"Key": "Purpose", "Value": "tune_NeurnalNet"}]
    tuner = HyperparameterTuner(
        base_tuning_job_name=NOTEBOOK,
        estimator=pytorch_estimator,
        metric_definitions=metric_definitions,
        objective_metric_name="validation:accuracy",
        objective_type="Maximize",
        hyperparameter_ranges=hyperparameter_ranges,
        max_jobs=2,
        max_parallel_jobs=2,
        tags=tune_job_tags,
    )
    train_input = TrainingInput(npz_inputs[0], content_type="application/x-npz")
    val_input = TrainingInput(npz_inputs[1], content_type="application/x-npz")
    tuner.fit({"train": train_input, "val": val_input})

    best_job_name = tuner.best_training_job()
    best_job_desc = session.sagemaker_client.describe_training_job(TrainingJobName=best_job_name)
    best_hyperparameters = best_job_desc["HyperParameters"]
    assert best_hyperparameters["epochs"].strip('"') in {"100", "200", "300"}
    assert 0.001 <= float(best_hyperparameters["learning_rate"].strip('"')) <= 0.1
    best_model_s3_uri = best_job_desc["ModelArtifacts"]["S3ModelArtifacts"]

    s3 = boto3.client("s3")
    bucket_name, model_key = best_model_s3_uri.split("/")[2], "/".join(best_model_s3_uri.split("/")[3:])
    s3.download_file(bucket_name, model_key, "best_model.tar.gz")
    with tarfile.open("best_model.tar.gz", "r:gz") as tar:
        tar.extractall(filter="data")
    from AWS_helpers.train_nn import TitanicNet, accuracy  # type: ignore[import-not-found]

    model = TitanicNet()
    model.load_state_dict(torch.load("nn_model.pth"))
    model.eval()
    val = np.load("val_data.npz")
    with torch.no_grad():
        predictions = model(torch.tensor(val["X_val"], dtype=torch.float32))
    labels = torch.tensor(val["y_val"], dtype=torch.float32).unsqueeze(1)
    assert accuracy(predictions, labels) > 0.6
    tuning_tags = session.sagemaker_client.list_tags(
        ResourceArn=tuner.describe()["HyperParameterTuningJobArn"]
    )
    assert {"Key": "Project", "Value": "sinkorswim"} in tuning_tags["Tags"]

    # The episode's cost accounting: the tuning job's settings and its jobs' billed seconds.
    sagemaker_client = boto3.client("sagemaker", region_name=REGION)
    tuning_job_name = tuner.latest_tuning_job.name
    tuning_job_desc = sagemaker_client.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name
    )
    assert tuning_job_desc["TrainingJobDefinition"]["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    limits = tuning_job_desc["HyperParameterTuningJobConfig"]["ResourceLimits"]
    assert (limits["MaxNumberOfTrainingJobs"], limits["MaxParallelTrainingJobs"]) == (2, 2)
    training_jobs = sagemaker_client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name, StatusEquals="Completed"
    )["TrainingJobSummaries"]
    assert len(training_jobs) == 2
    total_billing_time = 0
    for job in training_jobs:
        job_desc = sagemaker_client.describe_training_job(TrainingJobName=job["TrainingJobName"])
        training_time = job_desc["TrainingEndTime"] - job_desc["TrainingStartTime"]
        total_billing_time += (
            math.ceil(training_time.total_seconds()) * job_desc["ResourceConfig"]["InstanceCount"]
        )
        assert training_time.total_seconds() > 0
    assert total_billing_time >= 2


# -- Episode: RAG with processing jobs (HuggingFaceProcessor) --------------------------------------
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "of",
    "a",
    "to",
    "in",
    "is",
    "and",
    "for",
    "energy",
    "data",
    "center",
    "power",
    "gpu",
    "model",
    "training",
    "carbon",
    "emissions",
    "water",
    "cooling",
    "inference",
    "how",
    "much",
    "did",
    "use",
    "what",
    "was",
    "hours",
    "kwh",
    "tons",
]


def _tiny_bert(folder: Path) -> None:
    """A 2-layer BERT of width 16 and its tokenizer, in Hugging Face's layout, from a fixed seed:
    what SentenceTransformer(folder) loads (with mean pooling) with no download."""
    import torch

    width, layers, ffn = 16, 2, 32
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 64}))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(VOCAB), "hidden_size": width,
        "num_hidden_layers": layers, "num_attention_heads": 2, "intermediate_size": ffn,
        "max_position_embeddings": 64, "type_vocab_size": 2, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "pad_token_id": 0,
    }))  # fmt: skip
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.5

    state = {
        "embeddings.word_embeddings.weight": rand(len(VOCAB), width),
        "embeddings.position_embeddings.weight": rand(64, width) * 0.1,
        "embeddings.token_type_embeddings.weight": rand(2, width) * 0.1,
        "embeddings.LayerNorm.weight": torch.ones(width),
        "embeddings.LayerNorm.bias": torch.zeros(width),
        "pooler.dense.weight": rand(width, width),
        "pooler.dense.bias": torch.zeros(width),
    }
    for n in range(layers):
        p = f"encoder.layer.{n}."
        for name, (out, inp) in {
            "attention.self.query": (width, width), "attention.self.key": (width, width),
            "attention.self.value": (width, width), "attention.output.dense": (width, width),
            "intermediate.dense": (ffn, width), "output.dense": (width, ffn),
        }.items():  # fmt: skip
            state[p + name + ".weight"] = rand(out, inp)
            state[p + name + ".bias"] = torch.zeros(out)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            state[p + norm + ".weight"] = torch.ones(width)
            state[p + norm + ".bias"] = torch.zeros(width)
    torch.save(state, folder / "pytorch_model.bin")


CHUNKS = [
    ("doc1", "the gpu training used energy"),
    ("doc1", "the data center power for cooling"),
    ("doc2", "carbon emissions of model inference"),
    ("doc2", "water for cooling in hours"),
    ("doc3", "how much kwh did training use"),
]


@pytest.fixture(scope="module")
def rag_data(
    titanic_bucket: str, kernel_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The RAG episode's bucket contents (chunks.jsonl, train_QA.csv, metadata.csv) and the tiny
    model under models/, all made here."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=kernel_env["AWS_ENDPOINT_URL"], region_name=REGION,
                      aws_access_key_id=kernel_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=kernel_env["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    chunks = "".join(json.dumps({"doc_id": d, "text": t}) + "\n" for d, t in CHUNKS)
    s3.put_object(Bucket=BUCKET, Key="chunks.jsonl", Body=chunks.encode())
    questions = "id,question,answer_value,ref_id\nq1,how much kwh did training use,12,doc3\nq2,carbon emissions of model inference,3,doc2\n"
    s3.put_object(Bucket=BUCKET, Key="train_QA.csv", Body=questions.encode())
    s3.put_object(Bucket=BUCKET, Key="metadata.csv", Body=b"id,title\ndoc1,Energy\ndoc2,Carbon\ndoc3,Usage\n")
    model = tmp_path_factory.mktemp("tiny-model") / "tiny-bert"
    _tiny_bert(model)
    for path in model.iterdir():
        s3.upload_file(str(path), BUCKET, f"models/tiny-bert/{path.name}")
    return f"s3://{BUCKET}/models/tiny-bert/"


def test_rag_processing_episode(rag_data: str, notebook: Path) -> None:
    import boto3
    import numpy as np
    import pandas as pd
    import sagemaker
    from sagemaker import get_execution_role
    from sagemaker.huggingface import HuggingFaceProcessor
    from sagemaker.processing import ProcessingInput, ProcessingOutput

    session = sagemaker.Session()
    region = session.boto_region_name
    role = get_execution_role()
    s3_client = boto3.client("s3", region_name=region)
    code = notebook / "code"
    code.mkdir(exist_ok=True)
    for script in ("embedding_inference.py", "rag_batch.py"):
        shutil.copy(notebook / "AWS_helpers" / script, code / script)
    (code / "requirements.txt").write_text("\n".join(["sentence-transformers"]))
    chunks_s3_uri = f"s3://{BUCKET}/chunks.jsonl"

    # The lesson names a Hub model; here the tiny model is an input each job reads from disk.
    def model_input() -> ProcessingInput:
        return ProcessingInput(source=rag_data, destination="/opt/ml/processing/model")

    embedding_model_id = "/opt/ml/processing/model"

    embedding_processor = HuggingFaceProcessor(
        base_job_name="WattBot-embed-gte-large",
        role=role,
        instance_type="ml.g5.xlarge",
        instance_count=1,
        transformers_version="4.56",
        pytorch_version="2.8",
        py_version="py312",
        sagemaker_session=session,
        max_runtime_in_seconds=2 * 60 * 60,
    )
    embedding_processor.run(
        code="embedding_inference.py",
        source_dir="code/",
        inputs=[ProcessingInput(source=chunks_s3_uri, destination="/opt/ml/processing/input"), model_input()],
        outputs=[
            ProcessingOutput(
                output_name="embeddings",
                source="/opt/ml/processing/output",
                destination=f"s3://{BUCKET}/embeddings/",
            )
        ],
        arguments=[
            "--model_id",
            embedding_model_id,
            "--input_filename",
            "chunks.jsonl",
            "--text_key",
            "text",
            "--input_dir",
            "/opt/ml/processing/input",
            "--output_dir",
            "/opt/ml/processing/output",
        ],
    )
    s3_client.download_file(BUCKET, "embeddings/embeddings.npy", "embeddings.npy")
    chunk_embeddings = np.load("embeddings.npy")
    assert chunk_embeddings.shape == (len(CHUNKS), 16)
    assert np.allclose(np.linalg.norm(chunk_embeddings, axis=1), 1.0, atol=1e-5)

    rag_processor = HuggingFaceProcessor(
        base_job_name="WattBot-rag-batch",
        role=role,
        instance_type="ml.g5.xlarge",
        instance_count=1,
        transformers_version="4.56",
        pytorch_version="2.8",
        py_version="py312",
        sagemaker_session=session,
        max_runtime_in_seconds=4 * 60 * 60,
    )
    rag_processor.run(
        code="rag_batch.py",
        source_dir="code/",
        inputs=[
            ProcessingInput(source=chunks_s3_uri, destination="/opt/ml/processing/input/chunks"),
            ProcessingInput(
                source=f"s3://{BUCKET}/embeddings/embeddings.npy",
                destination="/opt/ml/processing/input/embeddings",
            ),
            ProcessingInput(
                source=f"s3://{BUCKET}/train_QA.csv", destination="/opt/ml/processing/input/train"
            ),
            ProcessingInput(
                source=f"s3://{BUCKET}/metadata.csv", destination="/opt/ml/processing/input/metadata"
            ),
            model_input(),
        ],
        outputs=[
            ProcessingOutput(
                output_name="solutions",
                source="/opt/ml/processing/output",
                destination=f"s3://{BUCKET}/solutions/",
            )
        ],
        arguments=[
            "--input_dir",
            "/opt/ml/processing/input",
            "--output_dir",
            "/opt/ml/processing/output",
            "--embedding_model_id",
            embedding_model_id,
            "--top_k",
            "8",
        ],
    )
    s3_client.download_file(BUCKET, "solutions/wattbot_solutions.csv", "wattbot_solutions.csv")
    solutions_df = pd.read_csv("wattbot_solutions.csv")
    assert list(solutions_df["id"]) == ["q1", "q2"]
    # Each question is word for word one chunk: the model ranks that chunk first, in both jobs.
    assert list(solutions_df["answer_value"]) == [CHUNKS[4][1], CHUNKS[2][1]]
    assert [ids.split(";")[0] for ids in solutions_df["ref_id"]] == ["doc3", "doc2"]


# -- The cost helpers (AWS_helpers/helpers.py) and the cleanup episode ------------------------------
def test_cost_helpers_after_the_episodes(titanic_bucket: str, notebook: Path) -> None:
    """Cost Explorer as the lesson's helpers ask it, after this module's jobs, and EC2's running
    instances (none: SageMaker's instances are not the account's EC2 instances)."""
    import datetime as dt

    import boto3

    client = boto3.client("ce", region_name="us-east-1")
    end = dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=1)
    response = client.get_cost_and_usage(
        TimePeriod={"Start": start.strftime("%Y-%m-%d"), "End": end.strftime("%Y-%m-%d")},
        Granularity="DAILY",
        Metrics=["UnblendedCost"],
    )
    assert [day["TimePeriod"] for day in response["ResultsByTime"]] == [
        {"Start": start.strftime("%Y-%m-%d"), "End": end.strftime("%Y-%m-%d")}
    ]  # yesterday only: End is exclusive, today's jobs are not in it
    sum(float(day["Total"]["UnblendedCost"]["Amount"]) for day in response["ResultsByTime"])
    today = client.get_cost_and_usage(
        TimePeriod={
            "Start": end.strftime("%Y-%m-%d"),
            "End": (end + dt.timedelta(days=1)).strftime("%Y-%m-%d"),
        },
        Granularity="DAILY",
        Metrics=["UnblendedCost"],
        GroupBy=[{"Type": "TAG", "Key": "Project"}],
    )
    by_project = {
        g["Keys"][0]: float(g["Metrics"]["UnblendedCost"]["Amount"])
        for g in today["ResultsByTime"][0]["Groups"]
    }
    assert by_project.get("Project$sinkorswim", 0.0) > 0.0  # the tagged training jobs, priced

    ec2_filtered = client.get_cost_and_usage(
        TimePeriod={"Start": start.strftime("%Y-%m-%d"), "End": end.strftime("%Y-%m-%d")},
        Granularity="DAILY",
        Metrics=["UnblendedCost"],
        Filter={
            "And": [
                {"Dimensions": {"Key": "SERVICE", "Values": ["Amazon Elastic Compute Cloud - Compute"]}},
                {"Dimensions": {"Key": "INSTANCE_TYPE", "Values": ["g4dn.xlarge"]}},
            ]
        },
    )
    assert sum(float(d["Total"]["UnblendedCost"]["Amount"]) for d in ec2_filtered["ResultsByTime"]) == 0.0

    ec2_client = boto3.client("ec2")
    response = ec2_client.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    instances = [
        {"InstanceId": i["InstanceId"], "InstanceType": i["InstanceType"]}
        for reservation in response["Reservations"]
        for i in reservation["Instances"]
    ]
    assert instances == []


def _notebook_names(client: Any) -> list[str]:
    return [n["NotebookInstanceName"] for n in client.list_notebook_instances()["NotebookInstances"]]


def _wait_for_status(client: Any, name: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        response = client.describe_notebook_instance(NotebookInstanceName=name)
        if response["NotebookInstanceStatus"] == status or time.monotonic() > deadline:
            return response  # type: ignore[no-any-return]
        assert response["NotebookInstanceStatus"] != "Failed", response.get("FailureReason")
        time.sleep(0.2)


def test_notebook_instance_helpers_and_cleanup(titanic_bucket: str, notebook: Path) -> None:
    """The notebook the lesson makes in the console, then its helpers' calls (the notebook's
    status and instance type), then the cleanup episode: stop and delete the notebook, empty and
    delete the bucket."""
    import boto3
    import sagemaker

    sagemaker_client = boto3.client("sagemaker", region_name=REGION)
    sagemaker_client.create_notebook_instance(
        NotebookInstanceName=NOTEBOOK,
        InstanceType="ml.t3.medium",
        RoleArn=sagemaker.get_execution_role(),
        VolumeSizeInGB=5,
        Tags=[{"Key": t["Key"], "Value": t["Value"]} for t in JOB_TAGS],
    )
    response = _wait_for_status(sagemaker_client, NOTEBOOK, "InService")
    assert (response["NotebookInstanceStatus"], response["InstanceType"]) == ("InService", "ml.t3.medium")

    # Cleanup: stop the notebook (no more instance-hours), delete it, empty and delete the bucket.
    sagemaker_client.stop_notebook_instance(NotebookInstanceName=NOTEBOOK)
    assert _wait_for_status(sagemaker_client, NOTEBOOK, "Stopped")["NotebookInstanceStatus"] == "Stopped"
    sagemaker_client.delete_notebook_instance(NotebookInstanceName=NOTEBOOK)
    deadline = time.monotonic() + 60
    while NOTEBOOK in _notebook_names(sagemaker_client) and time.monotonic() < deadline:
        time.sleep(0.2)  # Deleting, as on SageMaker, until it is gone
    assert NOTEBOOK not in _notebook_names(sagemaker_client)
    assert sagemaker_client.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"] == []
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=BUCKET)
    assert BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
