"""Asynchronous inference with the sagemaker SDK v3 (3.27), unchanged: ModelBuilder.deploy with an
AsyncInferenceConfig, then sagemaker-core's Endpoint.invoke_async, the answer read from S3."""

from __future__ import annotations

import json
import textwrap

from tests.compat_v3.conftest import ROLE, V3Runner

CLIENT = f"""
import io, json, tarfile, time
import boto3
import shipyard.connector  # the one line for Shipyard: STS here, the SDK's waits cut short
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.inference_config import AsyncInferenceConfig
from sagemaker.serve.model_builder import ModelBuilder

ROLE = "{ROLE}"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
HANDLER = '''
import json

def model_fn(model_dir):
    return "model"

def transform_fn(model, body, content_type, accept):
    return json.dumps({{"tripled": [3 * v for v in json.loads(body)]}}), "application/json"
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


session = Session(default_bucket="sdk-v3-async")
bucket = session.default_bucket()
s3 = boto3.client("s3")
s3.put_object(Bucket=bucket, Key="async/code.tar.gz", Body=tgz({{"inference.py": HANDLER}}))
s3.put_object(Bucket=bucket, Key="async/model.tar.gz", Body=tgz({{"model.txt": "unused"}}))
builder = ModelBuilder(
    image_uri=IMAGE,
    s3_model_data_url=f"s3://{{bucket}}/async/model.tar.gz",
    role_arn=ROLE,
    sagemaker_session=session,
    instance_type="ml.m5.large",
    env_vars={{
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{{bucket}}/async/code.tar.gz",
    }},
)
stamp = int(time.time() * 1000)
builder.build(model_name=f"v3-async-{{stamp}}")
endpoint = builder.deploy(
    endpoint_name=f"v3-async-{{stamp}}",
    initial_instance_count=1,
    inference_config=AsyncInferenceConfig(
        output_path=f"s3://{{bucket}}/async/out", failure_path=f"s3://{{bucket}}/async/failed"
    ),
)
s3.put_object(Bucket=bucket, Key="async/in/request.json", Body=b"[1, 2, 3]")
answer = endpoint.invoke_async(
    input_location=f"s3://{{bucket}}/async/in/request.json", content_type="application/json"
)
print("OUTPUT", answer.output_location)
key = answer.output_location.removeprefix(f"s3://{{bucket}}/")
s3.get_waiter("object_exists").wait(Bucket=bucket, Key=key, WaiterConfig={{"Delay": 0.1, "MaxAttempts": 600}})
print("ANSWER", s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
endpoint.delete()
"""


def test_model_builder_deploys_an_async_endpoint_and_invoke_async_writes_s3(run_v3: V3Runner) -> None:
    out = run_v3(textwrap.dedent(CLIENT))
    location = out.split("OUTPUT ", 1)[1].splitlines()[0]
    assert location.startswith("s3://sdk-v3-async/async/out/") and location.endswith(".out")
    assert json.loads(out.split("ANSWER ", 1)[1].splitlines()[0]) == {"tripled": [3, 6, 9]}
