"""Serving a small scikit-learn model: Shipyard's endpoint against a bare FastAPI app, MLflow and BentoML.

    bash benchmarks/setup-venv
    benchmarks/.venv/bin/python benchmarks/endpoint_serving.py [--seconds 10] [--connections 8]

One model (logistic regression on iris, scikit-learn 1.4.2 everywhere), trained by a Shipyard
training job and served, one JSON row per request, by:

* Shipyard: an endpoint, through the server's runtime route (``/endpoints/<name>/invocations``);
* the same endpoint's model server called directly (what Shipyard's routing adds is the difference);
* a bare FastAPI app calling ``model.predict`` (uvicorn, one worker);
* ``mlflow models serve`` (one worker) and ``bentoml serve``, each in its own virtual environment.

wrk measures each in turn: throughput with ``--connections`` connections, and latency percentiles
with one connection. Goals: Shipyard's throughput at least the best of MLflow and BentoML, its p50
at most 0.3 ms above the model server's own, no errors.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from shipyard.server import ServerProcess, free_port

HERE = Path(__file__).resolve().parent
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
ROW = [5.1, 3.5, 1.4, 0.2]
TRAIN = """
import joblib, os
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(x, y), os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
"""
FASTAPI_APP = """
import sys, joblib, numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
model = joblib.load(sys.argv[1])
app = FastAPI()
@app.post("/predict")
async def predict(request: Request):
    rows = np.asarray(await request.json())
    return Response(str(model.predict(rows).tolist()), media_type="application/json")
if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
BENTO_SERVICE = """
import os
import bentoml, joblib, numpy as np

@bentoml.service(workers=1)
class Iris:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["IRIS_MODEL"])

    @bentoml.api
    def predict(self, input: list) -> list:
        return self.model.predict(np.asarray(input)).tolist()
"""
MLFLOW_SAVE = (
    "import joblib, mlflow.sklearn, sys; mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2])"
)


def _tgz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def wrk(url: str, body: str, *, seconds: float, connections: int) -> dict[str, float]:
    """Requests per second, latency percentiles (ms) and errors, from wrk."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n'
        )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = sum(map(int, socket_errors.groups())) if socket_errors else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "errors": errors,
    }


@contextlib.contextmanager
def process(command: list[str], url: str, body: str, **kwargs: object) -> Iterator[None]:
    """Run a server until a POST of ``body`` to ``url`` succeeds; stop it afterwards."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.post(url, content=body, headers={"content-type": "application/json"}).status_code
                    == 200
                ):
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not come up: {' '.join(command)}")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    row = json.dumps([ROW])

    def measure(label: str, url: str, body: str) -> None:
        wrk(url, body, seconds=1, connections=args.connections)  # warm up
        results[label] = {
            "throughput": wrk(url, body, seconds=args.seconds, connections=args.connections),
            "latency": wrk(url, body, seconds=args.seconds / 2, connections=1),
        }
        print(label, json.dumps(results[label]), flush=True)

    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "data") as server:
        kw = {
            "endpoint_url": server.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
        }
        import boto3

        s3, sm = boto3.client("s3", **kw), boto3.client("sagemaker", **kw)
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="code.tar.gz", Body=_tgz({"train.py": TRAIN}))
        sm.create_training_job(
            TrainingJobName="iris",
            RoleArn="arn:aws:iam::000000000000:role/R",
            AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            HyperParameters={
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": '"s3://bench/code.tar.gz"',
            },
            OutputDataConfig={"S3OutputPath": "s3://bench/out"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 600},
        )
        while (job := sm.describe_training_job(TrainingJobName="iris"))["TrainingJobStatus"] == "InProgress":
            time.sleep(0.2)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        artifacts = job["ModelArtifacts"]["S3ModelArtifacts"]
        model_dir = Path(tmp) / "model"
        with tarfile.open(
            fileobj=io.BytesIO(
                s3.get_object(Bucket="bench", Key=artifacts.split("bench/", 1)[1])["Body"].read()
            )
        ) as tar:
            tar.extractall(model_dir, filter="data")
        model_file = model_dir / "model.joblib"

        sm.create_model(
            ModelName="iris",
            ExecutionRoleArn="arn:aws:iam::000000000000:role/R",
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": artifacts},
        )
        sm.create_endpoint_config(
            EndpointConfigName="iris",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "iris",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
        sm.create_endpoint(EndpointName="iris", EndpointConfigName="iris")
        while (endpoint := sm.describe_endpoint(EndpointName="iris"))["EndpointStatus"] == "Creating":
            time.sleep(0.2)
        assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
        direct = httpx.get(f"{server.url}/api/v1/endpoints/iris").json()["variants"][0]["instances"][0]["url"]
        measure("shipyard", f"{server.url}/endpoints/iris/invocations", row)
        measure("model server", f"{direct}/invocations", row)

        port = free_port()
        (Path(tmp) / "fastapi_app.py").write_text(FASTAPI_APP)
        with process(
            [sys.executable, str(Path(tmp) / "fastapi_app.py"), str(model_file), str(port)],
            f"http://127.0.0.1:{port}/predict",
            row,
        ):
            measure("fastapi", f"http://127.0.0.1:{port}/predict", row)

        mlflow = HERE / ".venv-mlflow" / "bin"
        if (mlflow / "mlflow").exists():
            saved = Path(tmp) / "mlflow-model"
            subprocess.run(
                [str(mlflow / "python"), "-c", MLFLOW_SAVE, str(model_file), str(saved)], check=True
            )
            port = free_port()
            body = json.dumps({"inputs": [ROW]})
            command = [
                str(mlflow / "mlflow"),
                "models",
                "serve",
                "-m",
                str(saved),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
            ]
            env = {**os.environ, "PATH": f"{mlflow}:{os.environ['PATH']}"}  # it starts its own uvicorn
            with process(command, f"http://127.0.0.1:{port}/invocations", body, env=env):
                measure("mlflow", f"http://127.0.0.1:{port}/invocations", body)

        bento = HERE / ".venv-bentoml" / "bin"
        if (bento / "bentoml").exists():
            (Path(tmp) / "service.py").write_text(BENTO_SERVICE)
            port = free_port()
            body = json.dumps({"input": [ROW]})
            command = [
                str(bento / "bentoml"),
                "serve",
                "service:Iris",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            with process(
                command,
                f"http://127.0.0.1:{port}/predict",
                body,
                cwd=tmp,
                env={"IRIS_MODEL": str(model_file), "PATH": f"{bento}:/usr/bin:/bin", "HOME": tmp},
            ):
                measure("bentoml", f"http://127.0.0.1:{port}/predict", body)

    peers = [results[p]["throughput"]["rps"] for p in ("mlflow", "bentoml") if p in results]
    added = results["shipyard"]["latency"]["p50_ms"] - results["model server"]["latency"]["p50_ms"]
    print()
    print(
        f"{'':14} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}   ({args.connections} connections; latency with 1)"
    )
    for label, figures in results.items():
        t, lat = figures["throughput"], figures["latency"]
        print(
            f"{label:14} {t['rps']:8.0f} {lat['p50_ms']:7.3f} {lat['p99_ms']:7.3f} {t['errors'] + lat['errors']:6.0f}"
        )
    if peers:
        print(
            f"Shipyard throughput / best of MLflow and BentoML: {results['shipyard']['throughput']['rps'] / max(peers):.2f} (goal >= 1)"
        )
    print(f"Shipyard's added p50 over its model server: {added:.3f} ms (goal <= 0.3)")
    shutil.rmtree(HERE / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
