"""The sagemaker SDK v3 (3.27) unchanged: ModelTrainer, HyperparameterTuner, processors,
Transformer, ModelBuilder, a Pipeline and ``@remote``, each a v3 client script run in the v3 venv
(conftest.py) against the session's server. What they assert is what a v3 user sees: the job's
status, its outputs and what its code printed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.compat_v3.conftest import ROLE, V3Runner

# Shared by the client scripts: a session on the server (the environment points boto3 at it), the
# role, a bucket, and a small CSV (label first, as the built-in XGBoost reads it) in it.
PRELUDE = f"""
import io, json, tarfile, time
import boto3
import shipyard.connector  # the one line for Shipyard: STS here, the SDK's waits cut short
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


def test_a_processor_runs_its_script_on_its_inputs(run_v3: V3Runner, tmp_path: Path) -> None:
    (tmp_path / "prep.py").write_text(
        "import os\n"
        "rows = open('/opt/ml/processing/input/train.csv').read().splitlines()\n"
        "os.makedirs('/opt/ml/processing/output', exist_ok=True)\n"
        "open('/opt/ml/processing/output/count.txt', 'w').write(str(len(rows)))\n"
    )
    out = run_v3(
        _client(
            """
            from sagemaker.core.processing import ScriptProcessor
            from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output

            image = image_uris.retrieve("sklearn", region="us-east-1", version="1.2-1", instance_type="ml.m5.large")
            processor = ScriptProcessor(
                role=ROLE, image_uri=image, command=["python3"], instance_count=1, instance_type="ml.m5.large",
                sagemaker_session=session, base_job_name="v3-processing",
            )
            processor.run(
                code="prep.py",
                inputs=[ProcessingInput(input_name="train", s3_input=ProcessingS3Input(
                    s3_uri=TRAIN, local_path="/opt/ml/processing/input", s3_data_type="S3Prefix", s3_input_mode="File"))],
                outputs=[ProcessingOutput(output_name="counts", s3_output=ProcessingS3Output(
                    s3_uri=f"s3://{bucket}/processed/", local_path="/opt/ml/processing/output", s3_upload_mode="EndOfJob"))],
                wait=True,
                logs=False,
            )
            processor.latest_job.refresh()
            print("STATUS", processor.latest_job.processing_job_status)
            print("COUNT", s3.get_object(Bucket=bucket, Key="processed/count.txt")["Body"].read().decode())
            """
        )
    )
    assert "STATUS Completed" in out
    assert "COUNT 200" in out


def test_hyperparameter_tuner_over_a_model_trainer(run_v3: V3Runner, tmp_path: Path) -> None:
    _code(
        tmp_path,
        {
            "tune.py": (
                "import argparse\n"
                "parser = argparse.ArgumentParser(); parser.add_argument('--lr', type=float)\n"
                "args, _ = parser.parse_known_args()\n"
                "print(f'score={1 - abs(args.lr - 0.3):.4f}')\n"
            )
        },
    )
    out = run_v3(
        _client(
            """
            from sagemaker.core.parameter import ContinuousParameter
            from sagemaker.core.training.configs import Compute, SourceCode
            from sagemaker.train.model_trainer import ModelTrainer
            from sagemaker.train.tuner import HyperparameterTuner

            image = image_uris.retrieve("sklearn", region="us-east-1", version="1.2-1", instance_type="ml.m5.large")
            trainer = ModelTrainer(
                training_image=image,
                source_code=SourceCode(source_dir="code", entry_script="tune.py"),
                compute=Compute(instance_type="ml.m5.large", instance_count=1),
                hyperparameters={"lr": 0.1},
                role=ROLE,
                sagemaker_session=session,
                base_job_name="v3-tune",
            )
            tuner = HyperparameterTuner(
                model_trainer=trainer,
                objective_metric_name="score",
                hyperparameter_ranges={"lr": ContinuousParameter(0.0, 1.0)},
                metric_definitions=[{"Name": "score", "Regex": "score=([0-9.]+)"}],
                strategy="Random",
                max_jobs=3,
                max_parallel_jobs=3,
            )
            tuner.tune(wait=True)
            job = tuner.latest_tuning_job
            job.refresh()
            print("STATUS", job.hyper_parameter_tuning_job_status, job.training_job_status_counters.completed)
            best = job.best_training_job
            print("BEST", best.training_job_name, best.final_hyper_parameter_tuning_job_objective_metric.value)
            """
        )
    )
    assert "STATUS Completed 3" in out
    best = out.split("BEST ", 1)[1].split()
    assert 0.0 <= float(best[1]) <= 1.0


def test_model_builder_deploys_registers_and_a_transformer_scores(run_v3: V3Runner) -> None:
    out = run_v3(
        _client(
            """
            from sagemaker.core.resources import Endpoint, EndpointConfig, Model, ModelPackage
            from sagemaker.core.shapes import ContainerDefinition, ProductionVariant
            from sagemaker.core.training.configs import Compute, InputData
            from sagemaker.core.transformer import Transformer
            from sagemaker.serve.model_builder import ModelBuilder
            from sagemaker.train.model_trainer import ModelTrainer

            image = image_uris.retrieve("xgboost", region="us-east-1", version="1.7-1")
            trainer = ModelTrainer(
                training_image=image,
                compute=Compute(instance_type="ml.m5.large", instance_count=1),
                hyperparameters={"objective": "binary:logistic", "num_round": "5", "max_depth": "2"},
                role=ROLE,
                sagemaker_session=session,
                base_job_name="v3-builder",
            )
            trainer.train(
                input_data_config=[InputData(channel_name="train", data_source=TRAIN, content_type="text/csv")],
                wait=True,
                logs=False,
            )
            job = trainer._latest_training_job
            job.refresh()
            builder = ModelBuilder(
                image_uri=image,
                s3_model_data_url=job.model_artifacts.s3_model_artifacts,
                role_arn=ROLE,
                sagemaker_session=session,
                instance_type="ml.m5.large",
            )
            stamp = int(time.time() * 1000)
            model = builder.build(model_name=f"v3-xgb-{stamp}")
            endpoint = builder.deploy(endpoint_name=f"v3-xgb-{stamp}", initial_instance_count=1)
            endpoint.refresh()
            print("ENDPOINT", endpoint.endpoint_status)  # deploy returned once it was in service
            answer = endpoint.invoke(body="2.1,3\\n0.3,1\\n", content_type="text/csv")
            print("ANSWER", answer.body.read().decode())
            endpoint.delete()

            package_arn = builder.register(
                model_package_group_name=f"v3-xgb-group-{stamp}",
                content_types=["text/csv"],
                response_types=["text/csv"],
                inference_instances=["ml.m5.large"],
                transform_instances=["ml.m5.large"],
                approval_status="Approved",
            )
            package = ModelPackage.get(model_package_name=package_arn)
            container = package.inference_specification.containers[0]
            print("PACKAGE", package.model_package_group_name, package.model_package_version,
                  package.model_approval_status, container.image == image,
                  container.model_data_url == job.model_artifacts.s3_model_artifacts)
            # deployed from the registered version: a model naming the package, its endpoint
            Model.create(
                model_name=f"v3-pkg-{stamp}",
                primary_container=ContainerDefinition(model_package_name=package_arn),
                execution_role_arn=ROLE,
            )
            EndpointConfig.create(endpoint_config_name=f"v3-pkg-{stamp}", production_variants=[ProductionVariant(
                variant_name="AllTraffic", model_name=f"v3-pkg-{stamp}", instance_type="ml.m5.large",
                initial_instance_count=1)])
            registered = Endpoint.create(endpoint_name=f"v3-pkg-{stamp}", endpoint_config_name=f"v3-pkg-{stamp}")
            registered.wait_for_status("InService")
            again = registered.invoke(body="2.1,3\\n0.3,1\\n", content_type="text/csv")
            print("REGISTERED", again.body.read().decode())
            registered.delete()

            s3.put_object(Bucket=bucket, Key="batch/in/rows.csv", Body=b"2.1,3\\n0.3,1\\n2.4,0\\n")
            transformer = Transformer(
                model_name=model.model_name,
                instance_count=1,
                instance_type="ml.m5.large",
                output_path=f"s3://{bucket}/batch/out/",
                sagemaker_session=session,
            )
            transformer.transform(f"s3://{bucket}/batch/in/", content_type="text/csv", split_type="Line", wait=True, logs=False)
            scored = s3.get_object(Bucket=bucket, Key="batch/out/rows.csv.out")["Body"].read().decode()
            print("SCORED", json.dumps(scored.split()))
            """
        )
    )
    assert "ENDPOINT InService" in out
    scores = [float(v) for v in out.split("ANSWER ", 1)[1].splitlines()[0].replace(",", " ").split()]
    assert len(scores) == 2 and scores[0] > 0.5 > scores[1]  # label 1 rows score high, label 0 low
    # registered: a group and its first version, the model's own image and artifacts
    package = out.split("PACKAGE ", 1)[1].splitlines()[0].split()
    assert package[0].startswith("v3-xgb-group-") and package[1:] == ["1", "Approved", "True", "True"]
    assert out.split("REGISTERED ", 1)[1].splitlines()[0] == out.split("ANSWER ", 1)[1].splitlines()[0]
    assert len(json.loads(out.split("SCORED ", 1)[1].splitlines()[0])) == 3  # one line per record


def test_model_builder_deploys_an_inference_spec(run_v3: V3Runner, tmp_path: Path) -> None:
    # ModelBuilder pickles the spec into the model's code/ with the SDK's own inference.py, which
    # imports sagemaker.serve, copies shared_libs/ over /lib and calls the spec's load and invoke.
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "train.csv").write_text(
        "".join(f"{i % 2},{(i % 2) * 2 + (i % 7) / 10},{i % 5}\n" for i in range(200))
    )
    out = run_v3(
        _client(
            """
            import os
            from sagemaker.serve.builder.schema_builder import SchemaBuilder
            from sagemaker.serve.model_builder import ModelBuilder
            from sagemaker.serve.spec.inference_spec import InferenceSpec
            from sagemaker.serve.utils.types import ModelServer

            class Classifier(InferenceSpec):
                def load(self, model_dir):
                    import numpy as np
                    from sklearn.linear_model import LogisticRegression

                    rows = np.loadtxt(os.path.join(model_dir, "train.csv"), delimiter=",")
                    return LogisticRegression().fit(rows[:, 1:], rows[:, 0])

                def invoke(self, input_object, model):
                    return model.predict_proba(input_object)[:, 1].tolist()

            builder = ModelBuilder(
                inference_spec=Classifier(),
                schema_builder=SchemaBuilder([[2.1, 3.0]], [0.9]),
                model_path=os.path.abspath("model"),
                image_uri=image_uris.retrieve("sklearn", region="us-east-1", version="1.2-1", instance_type="ml.m5.large"),
                model_server=ModelServer.TORCHSERVE,
                dependencies={"auto": False},  # auto runs pip, which a uv venv has not
                role_arn=ROLE,
                sagemaker_session=session,
                instance_type="ml.m5.large",
            )
            stamp = int(time.time() * 1000)
            builder.build(model_name=f"v3-spec-{stamp}")
            endpoint = builder.deploy(endpoint_name=f"v3-spec-{stamp}", initial_instance_count=1)
            endpoint.refresh()
            print("ENDPOINT", endpoint.endpoint_status)
            answer = endpoint.invoke(body=json.dumps([[2.1, 3.0], [0.3, 1.0]]), content_type="application/json")
            print("ANSWER", answer.body.read().decode())
            endpoint.delete()
            """
        )
    )
    assert "ENDPOINT InService" in out
    scores = json.loads(out.split("ANSWER ", 1)[1].splitlines()[0])
    assert len(scores) == 2 and scores[0] > 0.5 > scores[1]  # the spec's own model, loaded in the endpoint


def test_a_pipeline_with_processing_and_training_steps(run_v3: V3Runner, tmp_path: Path) -> None:
    (tmp_path / "prep.py").write_text(
        "import os, shutil\n"
        "os.makedirs('/opt/ml/processing/train', exist_ok=True)\n"
        "shutil.copy('/opt/ml/processing/input/train.csv', '/opt/ml/processing/train/train.csv')\n"
    )
    out = run_v3(
        _client(
            """
            from sagemaker.core.processing import ScriptProcessor
            from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
            from sagemaker.core.training.configs import Compute, InputData
            from sagemaker.core.workflow.pipeline_context import PipelineSession
            from sagemaker.mlops.workflow.pipeline import Pipeline
            from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
            from sagemaker.train.model_trainer import ModelTrainer

            pipeline_session = PipelineSession(default_bucket=bucket)
            sklearn = image_uris.retrieve("sklearn", region="us-east-1", version="1.2-1", instance_type="ml.m5.large")
            processor = ScriptProcessor(
                role=ROLE, image_uri=sklearn, command=["python3"], instance_count=1, instance_type="ml.m5.large",
                sagemaker_session=pipeline_session,
            )
            prepare = ProcessingStep(name="Prepare", step_args=processor.run(
                code="prep.py",
                inputs=[ProcessingInput(input_name="raw", s3_input=ProcessingS3Input(
                    s3_uri=TRAIN, local_path="/opt/ml/processing/input", s3_data_type="S3Prefix", s3_input_mode="File"))],
                outputs=[ProcessingOutput(output_name="train", s3_output=ProcessingS3Output(
                    s3_uri=f"s3://{bucket}/pipeline/train/", local_path="/opt/ml/processing/train", s3_upload_mode="EndOfJob"))],
            ))
            trainer = ModelTrainer(
                training_image=image_uris.retrieve("xgboost", region="us-east-1", version="1.7-1"),
                compute=Compute(instance_type="ml.m5.large", instance_count=1),
                hyperparameters={"objective": "binary:logistic", "num_round": "5"},
                role=ROLE,
                sagemaker_session=pipeline_session,
            )
            prepared = prepare.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri
            train = TrainingStep(name="Train", step_args=trainer.train(
                input_data_config=[InputData(channel_name="train", data_source=prepared, content_type="text/csv")]))
            pipeline = Pipeline(name="v3-pipeline", steps=[prepare, train], sagemaker_session=pipeline_session)
            pipeline.upsert(role_arn=ROLE)
            execution = pipeline.start()
            execution.wait()
            print("STATUS", execution.describe()["PipelineExecutionStatus"])
            for step in execution.list_steps():
                print("STEP", step["StepName"], step["StepStatus"])
            """
        )
    )
    assert "STATUS Succeeded" in out
    assert "STEP Prepare Succeeded" in out and "STEP Train Succeeded" in out


def test_model_trainer_on_two_instances_with_torchrun(run_v3: V3Runner, tmp_path: Path) -> None:
    # The requirements go into each instance's layer, and torchrun's workers (started with
    # torchrun's own interpreter) import them.
    _code(
        tmp_path,
        {
            "ddp.py": (
                "import os, inflection, torch, torch.distributed as dist\n"  # inflection: requirements.txt
                "dist.init_process_group('gloo')\n"
                "value = torch.tensor([float(dist.get_rank() + 1)])\n"
                "dist.all_reduce(value)\n"
                "print(f\"rank {dist.get_rank()} of {dist.get_world_size()} on {os.environ['SM_CURRENT_HOST']}: "
                'sum {value.item():g}", flush=True)\n'
                "dist.barrier()\n"  # both ranks done before gloo goes
                "dist.destroy_process_group()\n"
            ),
            "requirements.txt": "inflection==0.5.1\n",
        },
    )
    out = run_v3(
        _client(
            """
            from sagemaker.core.training.configs import Compute, SourceCode
            from sagemaker.train.distributed import Torchrun
            from sagemaker.train.model_trainer import ModelTrainer

            image = image_uris.retrieve(
                "pytorch", region="us-east-1", version="2.1", py_version="py310",
                instance_type="ml.m5.large", image_scope="training",
            )
            trainer = ModelTrainer(
                training_image=image,
                source_code=SourceCode(source_dir="code", entry_script="ddp.py", requirements="requirements.txt"),
                compute=Compute(instance_type="ml.m5.large", instance_count=2),
                distributed=Torchrun(process_count_per_node=1),
                role=ROLE,
                sagemaker_session=session,
                base_job_name="v3-torchrun",
            )
            trainer.train(wait=True, logs=False)
            job = trainer._latest_training_job
            job.refresh()
            print("STATUS", job.training_job_status)
            events = boto3.client("logs").filter_log_events(
                logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=job.training_job_name
            )["events"]
            print("RANKS", json.dumps(sorted(e["message"] for e in events if e["message"].startswith("rank "))))
            """
        )
    )
    assert "STATUS Completed" in out
    assert json.loads(out.split("RANKS ", 1)[1].splitlines()[0]) == [
        "rank 0 of 2 on algo-1: sum 3",
        "rank 1 of 2 on algo-2: sum 3",
    ]


def test_the_connector_sends_the_sdks_sts_calls_here(run_v3: V3Runner) -> None:
    # v3 hard-wires STS to https://sts.<region>.amazonaws.com (the account id, the execution role).
    out = run_v3(_client('print("ACCOUNT", session.account_id())\n'))
    assert "ACCOUNT 000000000000" in out


def test_a_step_function_in_a_pipeline_runs_with_the_clients_sdk(run_v3: V3Runner) -> None:
    out = run_v3(
        _client(
            """
            from sagemaker.mlops.workflow.function_step import step
            from sagemaker.mlops.workflow.pipeline import Pipeline

            @step(
                name="Square",
                instance_type="ml.m5.large",
                role=ROLE,
                image_uri="236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-311:1.0",
            )
            def square(x):
                import importlib.metadata
                import sagemaker.core  # what a function pickled by v3 needs in the job
                return {"value": x * x, "sdk": importlib.metadata.version("sagemaker")}

            pipeline = Pipeline(name="v3-step-pipeline", steps=[square(7)], sagemaker_session=session)
            pipeline.upsert(role_arn=ROLE)
            execution = pipeline.start()
            execution.wait()
            print("STATUS", execution.describe()["PipelineExecutionStatus"])
            print("RESULT", json.dumps(execution.result(step_name="Square")))
            """
        )
    )
    assert "STATUS Succeeded" in out
    assert json.loads(out.split("RESULT ", 1)[1].splitlines()[0]) == {"value": 49, "sdk": "3.27.0"}
