"""SageMaker Experiments as the sagemaker SDK 2.x uses it, unchanged: a ``Run`` logging
parameters, metrics and a file, a training job launched inside it whose script reopens the run
with ``load_run()``, and ``ExperimentAnalytics`` reading both back as one table; and boto3's
experiment, trial and trial-component calls with the errors SageMaker gives."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
# The site's Python with the sagemaker SDK, which the script's load_run() needs.
IMAGE = "236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-310:1.0"
SCRIPT = """
import argparse
from sagemaker.experiments.run import load_run
from sagemaker.session import Session

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
args = parser.parse_args()
with load_run(sagemaker_session=Session()) as run:  # the run the job was launched in
    run.log_parameter("batch-size", 64)
    for epoch in range(args.epochs):
        run.log_metric("job-accuracy", 0.5 + epoch / 10, step=epoch)
        print(f"epoch {epoch} accuracy={0.5 + epoch / 10}")
open("/opt/ml/model/model.txt", "w").write("trained")
"""


@pytest.fixture
def sagemaker_session(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    import sagemaker

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    boto_session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    yield sagemaker.Session(
        boto_session=boto_session,
        sagemaker_client=boto_client("sagemaker", server.url),
        default_bucket="sdk-experiments",
    )


def _error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as failed:
        call()
    error = failed.value.response["Error"]
    return error["Code"], error["Message"]


def test_a_run_and_the_training_job_in_it_read_back_as_one_table(
    sagemaker_session: Any, server: ServerProcess, tmp_path: Path
) -> None:
    from sagemaker.analytics import ExperimentAnalytics
    from sagemaker.estimator import Estimator
    from sagemaker.experiments.run import Run

    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text(SCRIPT)
    data = tmp_path / "features.csv"
    data.write_text("a,b\n1,2\n")
    experiment = f"churn-{uuid.uuid4().hex[:8]}"
    job_name = f"churn-train-{uuid.uuid4().hex[:8]}"
    estimator = Estimator(
        image_uri=IMAGE,
        entry_point="train.py",
        source_dir=str(tmp_path / "code"),
        role=ROLE,
        instance_type="ml.m5.large",
        instance_count=1,
        hyperparameters={"epochs": 3},
        metric_definitions=[{"Name": "accuracy", "Regex": "accuracy=([0-9.]+)"}],
        sagemaker_session=sagemaker_session,
    )
    with Run(experiment_name=experiment, run_name="baseline", sagemaker_session=sagemaker_session) as run:
        run.log_parameter("learning-rate", 0.1)
        run.log_parameters({"optimizer": "adam", "layers": 3})
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            run.log_metric("loss", loss, step=step)
        run.log_file(str(data), name="features", is_output=False)
        estimator.fit(job_name=job_name, logs=False)  # inside the run: its ExperimentConfig
    sm = sagemaker_session.sagemaker_client
    assert sm.describe_training_job(TrainingJobName=job_name)["TrainingJobStatus"] == "Completed"

    frame = ExperimentAnalytics(experiment_name=experiment, sagemaker_session=sagemaker_session).dataframe()
    rows = {row["TrialComponentName"]: row for row in frame.to_dict("records")}
    run_row, job_row = rows[f"{experiment}-baseline"], rows[f"{job_name}-aws-training-job"]
    assert len(rows) == 2
    # The run: what the notebook logged and what the job's load_run() added to it.
    assert run_row["learning-rate"] == 0.1 and run_row["optimizer"] == "adam" and run_row["layers"] == 3
    assert run_row["batch-size"] == 64
    assert (run_row["loss - Min"], run_row["loss - Max"], run_row["loss - Last"]) == (0.3, 0.9, 0.3)
    assert run_row["loss - Count"] == 3 and run_row["loss - Avg"] == pytest.approx(17 / 30)
    assert run_row["job-accuracy - Max"] == pytest.approx(0.7) and run_row["job-accuracy - Count"] == 3
    assert run_row["features - Value"].startswith("s3://sdk-experiments/")
    # The job: its hyperparameters, its metric definitions' values, its source; both in the run group.
    assert job_row["epochs"] == 3 and job_row["SageMaker.InstanceType"] == "ml.m5.large"
    assert job_row["accuracy - Last"] == pytest.approx(0.7) and job_row["accuracy - Min"] == 0.5
    assert job_row["SourceArn"].endswith(f":training-job/{job_name}")
    assert run_row["Trials"] == job_row["Trials"] == [f"Default-Run-Group-{experiment}"]
    assert run_row["Experiments"] == job_row["Experiments"] == [experiment]

    # BatchGetMetrics reads the series back: the job's by its ARN, the run's by its component's.
    run_arn = f"arn:aws:sagemaker:us-east-1:000000000000:experiment-trial-component/{experiment}-baseline"
    series = boto_client("sagemaker-metrics", server.url).batch_get_metrics(
        MetricQueries=[
            {
                "MetricName": name,
                "ResourceArn": arn,
                "MetricStat": "Avg",
                "Period": "IterationNumber",
                "XAxisType": "IterationNumber",
            }
            for name, arn in (("accuracy", job_row["SourceArn"]), ("loss", run_arn))
        ]
    )["MetricQueryResults"]
    assert series[0]["MetricValues"] == pytest.approx([0.5, 0.6, 0.7])
    assert (series[1]["XAxisValues"], series[1]["MetricValues"]) == ([0, 1, 2], [0.9, 0.5, 0.3])

    component = sm.describe_trial_component(TrialComponentName=f"{experiment}-baseline")
    assert (
        component["Status"]["PrimaryStatus"] == "Completed" and component["EndTime"] >= component["StartTime"]
    )
    found = sm.list_trial_components(SourceArn=job_row["SourceArn"].lower())["TrialComponentSummaries"]
    assert [c["TrialComponentName"] for c in found] == [f"{job_name}-aws-training-job"]
    job_component = sm.describe_trial_component(TrialComponentName=f"{job_name}-aws-training-job")
    assert job_component["Status"]["PrimaryStatus"] == "Completed"
    assert job_component["OutputArtifacts"]["SageMaker.ModelArtifact"]["Value"].endswith("model.tar.gz")
    assert json.loads(job_component["Parameters"]["sagemaker_program"]["StringValue"]) == "train.py"


def test_experiment_calls_answer_as_sagemaker_does(server: ServerProcess) -> None:
    sm = boto_client("sagemaker", server.url)
    name = f"exp-{uuid.uuid4().hex[:8]}"
    sm.create_experiment(ExperimentName=name, DisplayName="First", Tags=[{"Key": "team", "Value": "ml"}])
    code, message = _error(lambda: sm.create_experiment(ExperimentName=name.upper()))
    assert code == "ValidationException" and "already exists" in message  # names ignore case
    code, message = _error(lambda: sm.create_experiment(ExperimentName="../escape"))
    assert code == "ValidationException" and "experimentName" in message
    code, message = _error(lambda: sm.create_trial(TrialName=f"{name}-t", ExperimentName=f"{name}-none"))
    assert code == "ResourceNotFound" and f"experiment/{name}-none" in message
    for i in range(3):
        sm.create_trial(TrialName=f"{name}-t{i}", ExperimentName=name)
    component = f"{name}-c"
    sm.create_trial_component(
        TrialComponentName=component,
        Parameters={"alpha": {"NumberValue": 0.5}, "kind": {"StringValue": "ridge"}},
        Status={"PrimaryStatus": "InProgress"},
    )
    sm.associate_trial_component(TrialComponentName=component, TrialName=f"{name}-t0")
    sm.associate_trial_component(TrialComponentName=component, TrialName=f"{name}-t1")

    # Lists page with NextToken; filters by experiment and by component.
    first = sm.list_trials(ExperimentName=name, MaxResults=2, SortBy="Name", SortOrder="Ascending")
    rest = sm.list_trials(
        ExperimentName=name, MaxResults=2, NextToken=first["NextToken"], SortBy="Name", SortOrder="Ascending"
    )
    assert [t["TrialName"] for t in first["TrialSummaries"] + rest["TrialSummaries"]] == [
        f"{name}-t0",
        f"{name}-t1",
        f"{name}-t2",
    ]
    assert "NextToken" not in rest
    trials = sm.list_trials(TrialComponentName=component)["TrialSummaries"]
    assert sorted(t["TrialName"] for t in trials) == [f"{name}-t0", f"{name}-t1"]
    listed = sm.list_trial_components(ExperimentName=name)["TrialComponentSummaries"]
    assert [c["TrialComponentName"] for c in listed] == [component]

    # Search: filters on parameters and parents; sorted; another resource refused by name.
    def search(*filters: dict[str, str]) -> list[str]:
        results = sm.search(Resource="ExperimentTrialComponent", SearchExpression={"Filters": list(filters)})
        return [r["TrialComponent"]["TrialComponentName"] for r in results["Results"]]

    assert search({"Name": "Parents.TrialName", "Operator": "Equals", "Value": f"{name}-t1"}) == [component]
    assert search({"Name": "Parameters.alpha", "Operator": "GreaterThan", "Value": "0.4"}) != []
    assert (
        search(
            {"Name": "Parents.ExperimentName", "Operator": "Equals", "Value": name},
            {"Name": "Parameters.kind", "Operator": "Equals", "Value": "lasso"},
        )
        == []
    )
    tagged = sm.search(
        Resource="Experiment",
        SearchExpression={"Filters": [{"Name": "Tags.team", "Operator": "Equals", "Value": "ml"}]},
    )["Results"]
    assert name in [r["Experiment"]["ExperimentName"] for r in tagged]
    code, message = _error(lambda: sm.search(Resource="FeatureGroup"))
    assert code == "ValidationException" and "FeatureGroup" in message

    # Deletes go leaf first, as SageMaker's do, each refusal naming what is in the way.
    code, message = _error(lambda: sm.delete_experiment(ExperimentName=name))
    assert code == "ValidationException" and f"{name}-t0" in message
    code, message = _error(lambda: sm.delete_trial_component(TrialComponentName=component))
    assert code == "ValidationException" and "DisassociateTrialComponent" in message
    for trial in (f"{name}-t0", f"{name}-t1"):
        sm.disassociate_trial_component(TrialComponentName=component, TrialName=trial)
    sm.delete_trial_component(TrialComponentName=component)
    for i in range(3):
        sm.delete_trial(TrialName=f"{name}-t{i}")
    assert sm.delete_experiment(ExperimentName=name)["ExperimentArn"].endswith(f":experiment/{name}")
    code, _ = _error(lambda: sm.describe_experiment(ExperimentName=name))
    assert code == "ResourceNotFound"


def test_a_jobs_experiment_config_must_name_what_exists(server: ServerProcess) -> None:
    sm = boto_client("sagemaker", server.url)
    name = f"exp-{uuid.uuid4().hex[:8]}"
    job = f"job-{uuid.uuid4().hex[:8]}"
    request = {
        "TrainingJobName": job,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"sagemaker_program": '"train.py"', "lr": "0.01"},
        "OutputDataConfig": {"S3OutputPath": "s3://sdk-experiments/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "ExperimentConfig": {"ExperimentName": name},
    }
    code, message = _error(lambda: sm.create_training_job(**request))
    assert code == "ResourceNotFound" and f"experiment/{name}" in message
    code, _ = _error(lambda: sm.describe_training_job(TrainingJobName=job))
    assert code == "ResourceNotFound"  # no job was made
    sm.create_experiment(ExperimentName=name)
    sm.create_training_job(**request)  # no TrialName: a trial is made for the job, as SageMaker does
    component = f"{job}-aws-training-job"
    trials = sm.list_trials(ExperimentName=name)["TrialSummaries"]
    assert [t["TrialName"] for t in trials] == [component]
    described = sm.describe_trial_component(TrialComponentName=component)
    assert described["Parameters"]["lr"] == {"NumberValue": 0.01}
    assert described["Source"] == {
        "SourceArn": f"arn:aws:sagemaker:us-east-1:000000000000:training-job/{job}",
        "SourceType": "SageMakerTrainingJob",
    }
    code, message = _error(
        lambda: sm.update_trial_component(TrialComponentName=component, DisplayName="mine")
    )
    assert code == "ValidationException" and job in message
    # Unfiltered, jobs' components and stored ones page together, each once, in the order asked.
    sm.create_trial_component(TrialComponentName=f"{job}-notes")
    names: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = sm.list_trial_components(MaxResults=2, SortBy="Name", SortOrder="Ascending", **token)
        names += [c["TrialComponentName"] for c in page["TrialComponentSummaries"]]
        if "NextToken" not in page:
            break
        token = {"NextToken": page["NextToken"]}
    assert {component, f"{job}-notes"} <= set(names) and len(names) == len(set(names))
    assert names == sorted(names, key=str.lower)
    code, message = _error(lambda: sm.create_trial_component(TrialComponentName="x-aws-training-job"))
    assert code == "ValidationException" and "-aws-training-job" in message


def test_lineage_artifacts_and_associations_as_the_sdks_helpers_use_them(sagemaker_session: Any) -> None:
    from sagemaker.lineage.artifact import Artifact
    from sagemaker.lineage.association import Association

    sm = sagemaker_session.sagemaker_client
    component = f"tc-{uuid.uuid4().hex[:8]}"
    component_arn = sm.create_trial_component(TrialComponentName=component)["TrialComponentArn"]
    uri = f"s3://sdk-experiments/{component}/confusion.json"
    artifact = Artifact.create(
        artifact_name="confusion-matrix",
        source_uri=uri,
        artifact_type="ConfusionMatrix",
        properties={"classes": "2"},
        sagemaker_session=sagemaker_session,
    )
    assert artifact.artifact_arn.startswith("arn:aws:sagemaker:us-east-1:000000000000:artifact/")
    [found] = list(Artifact.list(source_uri=uri, sagemaker_session=sagemaker_session))
    assert (found.artifact_arn, found.artifact_name) == (artifact.artifact_arn, "confusion-matrix")
    loaded = Artifact.load(artifact.artifact_arn, sagemaker_session=sagemaker_session)
    assert loaded.properties == {"classes": "2"} and loaded.source.source_uri == uri

    # The run produced it (Run.log_confusion_matrix's edge); adding it again "already exists".
    Association.create(
        source_arn=artifact.artifact_arn,
        destination_arn=component_arn,
        association_type="Produced",
        sagemaker_session=sagemaker_session,
    )
    code, message = _error(
        lambda: sm.add_association(SourceArn=artifact.artifact_arn, DestinationArn=component_arn)
    )
    assert code == "ValidationException" and "already exists" in message
    [edge] = list(Association.list(destination_arn=component_arn, sagemaker_session=sagemaker_session))
    assert (edge.source_arn, edge.association_type) == (artifact.artifact_arn, "Produced")
    assert (edge.source_type, edge.destination_name) == ("ConfusionMatrix", component)
    context = "arn:aws:sagemaker:us-east-1:000000000000:context/endpoint-ctx"  # none such
    code, message = _error(
        lambda: sm.add_association(SourceArn=artifact.artifact_arn, DestinationArn=context)
    )
    assert code == "ResourceNotFound" and context in message
    missing = artifact.artifact_arn[:-4] + "0000"
    code, _ = _error(lambda: sm.add_association(SourceArn=missing, DestinationArn=component_arn))
    assert code == "ResourceNotFound"

    sm.delete_association(SourceArn=artifact.artifact_arn, DestinationArn=component_arn)
    assert sm.list_associations(DestinationArn=component_arn)["AssociationSummaries"] == []
    artifact.delete()
    code, _ = _error(lambda: sm.describe_artifact(ArtifactArn=artifact.artifact_arn))
    assert code == "ResourceNotFound"
