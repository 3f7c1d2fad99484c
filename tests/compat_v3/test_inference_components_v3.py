"""Inference components with the sagemaker SDK v3 (3.27), unchanged: two models deployed onto one
endpoint by ``ModelBuilder.deploy(inference_config=ResourceRequirements(...))``, each answering
through sagemaker-core's ``Endpoint.invoke(inference_component_name=...)``, then deleted."""

from __future__ import annotations

import json
import textwrap

from tests.compat_v3.conftest import ROLE, V3Runner

CLIENT = f"""
import io, json, tarfile, time
import boto3
import shipyard.connector  # the one line for Shipyard: STS here, the SDK's waits cut short
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.inference_config import ResourceRequirements
from sagemaker.serve.model_builder import ModelBuilder

ROLE = "{ROLE}"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
HANDLER = '''
import json, os

def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        return json.load(f)

def transform_fn(model, body, content_type, accept):
    return json.dumps({{"model": model["name"], "scaled": [model["scale"] * v for v in json.loads(body)]}}), "application/json"
'''


def tgz(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


session = Session(default_bucket="sdk-v3-components")
bucket = session.default_bucket()
s3 = boto3.client("s3")
stamp = int(time.time() * 1000)
endpoint_name = f"v3-shared-{{stamp}}"
endpoints = {{}}
for name, scale in (("small", 2), ("large", 10)):
    model = json.dumps({{"name": name, "scale": scale}})
    s3.put_object(Bucket=bucket, Key=f"{{name}}/model.tar.gz", Body=tgz({{"model.json": model, "code/inference.py": HANDLER}}))
    builder = ModelBuilder(
        image_uri=IMAGE,
        s3_model_data_url=f"s3://{{bucket}}/{{name}}/model.tar.gz",
        role_arn=ROLE,
        sagemaker_session=session,
        instance_type="ml.m5.large",
        env_vars={{"SAGEMAKER_PROGRAM": "inference.py"}},
    )
    builder.build(model_name=f"v3-{{name}}-{{stamp}}")
    endpoints[name] = builder.deploy(
        endpoint_name=endpoint_name,
        initial_instance_count=1,
        inference_config=ResourceRequirements(requests={{"num_cpus": 0.5, "memory": 512, "copies": 1}}),
        inference_component_name=f"v3-{{name}}-ic-{{stamp}}",
    )
    print("COMPONENT", name, builder.inference_component_name)
sm = boto3.client("sagemaker")
for name in ("small", "large"):
    component = f"v3-{{name}}-ic-{{stamp}}"
    status = sm.describe_inference_component(InferenceComponentName=component)["InferenceComponentStatus"]
    answer = endpoints[name].invoke(
        body=json.dumps([1, 2]), content_type="application/json", inference_component_name=component
    )
    print("ANSWER", name, status, answer.body.read().decode())
for name in ("small", "large"):
    sm.delete_inference_component(InferenceComponentName=f"v3-{{name}}-ic-{{stamp}}")
endpoints["small"].delete()
print("LEFT", len(sm.list_inference_components(EndpointNameEquals=endpoint_name)["InferenceComponents"]))
"""


def test_model_builder_puts_two_models_on_one_endpoint_as_inference_components(run_v3: V3Runner) -> None:
    out = run_v3(textwrap.dedent(CLIENT))
    answers = {
        line.split()[1]: (line.split()[2], json.loads(line.split(" ", 3)[3]))
        for line in out.splitlines()
        if line.startswith("ANSWER ")
    }
    assert answers == {
        "small": ("InService", {"model": "small", "scaled": [2, 4]}),
        "large": ("InService", {"model": "large", "scaled": [10, 20]}),
    }
    assert "LEFT 0" in out
