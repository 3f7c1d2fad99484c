"""Serving a small scikit-learn model: Shipyard's endpoint against a bare uvicorn proxy, a bare
FastAPI app, Ray Serve, MLflow and BentoML.

    bash benchmarks/setup-venv
    benchmarks/.venv/bin/python benchmarks/endpoint_serving.py [--seconds 10] [--connections 8]

One model (logistic regression on iris, scikit-learn 1.4.2 everywhere), trained by a Shipyard
training job and served, one JSON row per request, by:

* Shipyard: an endpoint, through the server's runtime route (``/endpoints/<name>/invocations``);
* the same endpoint's model server called directly (what Shipyard's routing adds is the difference);
* a bare uvicorn proxy: a minimal ASGI app (uvicorn configured as ``shipyard server`` configures it)
  forwarding each POST body to that same model server over pooled keep-alive connections, the
  least any router's hop could cost;
* a bare FastAPI app calling ``model.predict`` (uvicorn, one worker);
* Ray Serve: one deployment (one replica) calling ``model.predict``, behind Serve's HTTP proxy;
* ``mlflow models serve`` (one worker) and ``bentoml serve``, each in its own virtual environment.

wrk measures each in turn: throughput with ``--connections`` connections, and latency percentiles
with one connection. During the throughput run the processes' CPU time (``/proc/<pid>/stat``) is
divided by the requests answered: CPU per request of the router (the Shipyard server process, or
the bare proxy) and of the model server apart, and of Ray Serve's proxy, its replica and the rest
of Ray (GCS, raylet, ...). Goals: Shipyard's throughput at least the best of MLflow and BentoML,
its p50 at most 0.3 ms above the model server's own, its router's CPU per request at most the
bare proxy's, no errors.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
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
PROXY_APP = """
import asyncio, socket, sys
import uvicorn

UPSTREAM, PORT, TOKEN = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
HOST, UP_PORT = UPSTREAM.rsplit(":", 1)
IDLE = []  # keep-alive connections to the model server

async def exchange(body, content_type):
    if IDLE:
        reader, writer = IDLE.pop()
    else:
        reader, writer = await asyncio.open_connection(HOST, int(UP_PORT))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.write(
        b"POST /invocations HTTP/1.1\\r\\nHost: %s\\r\\nContent-Type: %s\\r\\nX-Shipyard-Token: %s\\r\\n"
        b"Content-Length: %d\\r\\n\\r\\n%s" % (UPSTREAM.encode(), content_type, TOKEN, len(body), body)
    )
    head = (await reader.readuntil(b"\\r\\n\\r\\n")).split(b"\\r\\n")
    fields = dict(line.lower().split(b": ", 1) for line in head[1:] if line)
    data = await reader.readexactly(int(fields.get(b"content-length", b"0")))
    IDLE.append((reader, writer))
    return int(head[0].split()[1]), fields.get(b"content-type", b"application/json"), data

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"application/json")
    status, answer_type, data = await exchange(body, content_type)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", answer_type), (b"content-length", b"%d" % len(data))],
    })
    await send({"type": "http.response.body", "body": data})

uvicorn.run(app, host="127.0.0.1", port=PORT, lifespan="on", log_level="warning", access_log=False, server_header=False)
"""
RAY_SERVE_APP = """
import signal, sys, time
import joblib, numpy as np, ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

MODEL, PORT = sys.argv[1], int(sys.argv[2])

@serve.deployment(num_replicas=1)
class Iris:
    def __init__(self):
        self.model = joblib.load(MODEL)

    async def __call__(self, request: Request):
        rows = np.asarray(await request.json())
        return Response(str(self.model.predict(rows).tolist()), media_type="application/json")

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
for attempt in range(3):  # on a loaded machine the node may miss Ray's 30 s to start
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
        break
    except Exception:
        ray.shutdown()
        if attempt == 2:
            raise
try:
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(Iris.bind(), route_prefix="/predict")
    while True:
        time.sleep(3600)
finally:
    serve.shutdown()
    ray.shutdown()
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


def wrk(
    url: str, body: str, *, seconds: float, connections: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """Requests per second, requests answered, latency percentiles (ms) and errors, from wrk."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
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
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "errors": errors,
    }


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of the processes (all their threads), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def processes() -> dict[int, tuple[int, str]]:
    """Every process: pid → (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                found[int(entry.name)] = (
                    ppid,
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(),
                )
    return found


def descendants(root: int) -> list[int]:
    table, found, frontier = processes(), [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in table.items() if ppid == parent]
        found += children
        frontier += children
    return found


def model_server(url: str) -> tuple[list[int], str]:
    """The processes of the model server answering at ``url`` (its Python, and the sandbox that
    runs it), and the token it answers to: read from its environment, as only its own user or
    root may (it answers nothing without it)."""
    port = url.rsplit(":", 1)[1]
    pids = [
        pid
        for pid, (_, command) in processes().items()
        if "model_server.py" in command and f" --port {port} " in f"{command} "
    ]
    token = ""
    for pid in pids:
        with contextlib.suppress(OSError):
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                if item.startswith(b"SHIPYARD_MODEL_SERVER_TOKEN="):
                    token = item.split(b"=", 1)[1].decode()
    if not pids or not token:
        raise SystemExit(f"no model server found at {url} (or not its token: run as its user or root)")
    return pids, token


@contextlib.contextmanager
def process(command: list[str], url: str, body: str, *, wait: float = 180, **kwargs: object) -> Iterator[int]:
    """Run a server until a POST of ``body`` to ``url`` succeeds (its pid); stop it afterwards,
    and whatever it started that is still running. Its output goes to a log file, whose tail is
    shown when it does not come up within ``wait`` seconds."""
    fd, name = tempfile.mkstemp(suffix=".log")
    os.close(fd)
    log_path = Path(name)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    try:
        deadline = time.monotonic() + wait
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.post(url, content=body, headers={"content-type": "application/json"}).status_code
                    == 200
                ):
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{command[0]} did not come up: {' '.join(command)}\n{tail}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        table = processes()  # what it started, to end what outlives it (Ray's, even when it failed)
        started = {pid: table[pid][1] for pid in descendants(proc.pid) if pid in table}
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()
        table = processes()
        for pid, cmdline in started.items():  # what it left behind (Ray's), if it is still that
            if pid in table and table[pid][1] == cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        log_path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--skip", default="", help="comma-separated peers not to run: fastapi, ray, mlflow, bentoml"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, dict[str, dict[str, float]]] = {}
    cpu: dict[str, dict[str, float]] = {}  # label → process group → CPU µs per request
    row = json.dumps([ROW])

    def measure(
        label: str,
        url: str,
        body: str,
        headers: dict[str, str] | None = None,
        groups: Callable[[], dict[str, list[int]]] | None = None,
    ) -> None:
        """wrk's figures, and the CPU per request of each group of processes ``groups`` names
        (asked again after the warm-up, when every worker is started)."""
        wrk(url, body, seconds=1, connections=args.connections, headers=headers)  # warm up
        pids = groups() if groups else {}
        before = {group: cpu_seconds(members) for group, members in pids.items()}
        throughput = wrk(url, body, seconds=args.seconds, connections=args.connections, headers=headers)
        cpu[label] = {
            group: (cpu_seconds(members) - before[group]) / throughput["requests"] * 1e6
            for group, members in pids.items()
        }
        results[label] = {
            "throughput": throughput,
            "latency": wrk(url, body, seconds=args.seconds / 2, connections=1, headers=headers),
        }
        print(label, json.dumps({**results[label], "cpu_us_per_request": cpu[label]}), flush=True)

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
        model_pids, token = model_server(direct)
        assert server.process is not None
        router_pid = server.process.pid
        measure(
            "shipyard",
            f"{server.url}/endpoints/iris/invocations",
            row,
            groups=lambda: {"router": [router_pid], "model server": model_pids},
        )
        measure(
            "model server",
            f"{direct}/invocations",
            row,
            {"X-Shipyard-Token": token},
            lambda: {"model server": model_pids},
        )
        port = free_port()
        (Path(tmp) / "proxy_app.py").write_text(PROXY_APP)
        proxy_url = f"http://127.0.0.1:{port}/invocations"
        with process(
            [sys.executable, str(Path(tmp) / "proxy_app.py"), direct.split("//", 1)[1], str(port), token],
            proxy_url,
            row,
        ) as proxy_pid:
            measure(
                "uvicorn proxy",
                proxy_url,
                row,
                groups=lambda: {"router": [proxy_pid], "model server": model_pids},
            )

        if "fastapi" not in skip:
            port = free_port()
            (Path(tmp) / "fastapi_app.py").write_text(FASTAPI_APP)
            with process(
                [sys.executable, str(Path(tmp) / "fastapi_app.py"), str(model_file), str(port)],
                f"http://127.0.0.1:{port}/predict",
                row,
            ) as pid:
                measure("fastapi", f"http://127.0.0.1:{port}/predict", row, groups=lambda: {"server": [pid]})

        if "ray" not in skip and importlib.util.find_spec("ray.serve") is not None:
            port = free_port()
            (Path(tmp) / "ray_serve_app.py").write_text(RAY_SERVE_APP)
            with process(
                [sys.executable, str(Path(tmp) / "ray_serve_app.py"), str(model_file), str(port)],
                f"http://127.0.0.1:{port}/predict",
                row,
                wait=600,  # Ray's own start: GCS, raylet, Serve's controller and proxy
                env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_raylet_start_wait_time_s": "60"},
            ) as pid:

                def ray_groups() -> dict[str, list[int]]:
                    table = processes()
                    tree = [*descendants(pid), pid]
                    proxy = [p for p in tree if table.get(p, (0, ""))[1].startswith("ray::ProxyActor")]
                    replica = [p for p in tree if table.get(p, (0, ""))[1].startswith("ray::ServeReplica")]
                    rest = [p for p in tree if p not in proxy and p not in replica]
                    return {"router": proxy, "model server": replica, "rest of Ray": rest}

                measure("ray serve", f"http://127.0.0.1:{port}/predict", row, groups=ray_groups)

        mlflow = HERE / ".venv-mlflow" / "bin"
        if "mlflow" not in skip and (mlflow / "mlflow").exists():
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
            with process(command, f"http://127.0.0.1:{port}/invocations", body, env=env) as pid:
                measure(
                    "mlflow",
                    f"http://127.0.0.1:{port}/invocations",
                    body,
                    groups=lambda: {"server": [pid, *descendants(pid)]},
                )

        bento = HERE / ".venv-bentoml" / "bin"
        if "bentoml" not in skip and (bento / "bentoml").exists():
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
            ) as pid:
                measure(
                    "bentoml",
                    f"http://127.0.0.1:{port}/predict",
                    body,
                    groups=lambda: {"server": [pid, *descendants(pid)]},
                )

    peers = [results[p]["throughput"]["rps"] for p in ("mlflow", "bentoml") if p in results]
    added = results["shipyard"]["latency"]["p50_ms"] - results["model server"]["latency"]["p50_ms"]
    print()
    print(
        f"{'':14} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}   {'CPU µs per request':<40}"
        f"({args.connections} connections; latency with 1; load {os.getloadavg()[0]:.1f})"
    )
    for label, figures in results.items():
        t, lat = figures["throughput"], figures["latency"]
        per_request = ", ".join(f"{group} {us:.0f}" for group, us in cpu.get(label, {}).items())
        print(
            f"{label:14} {t['rps']:8.0f} {lat['p50_ms']:7.3f} {lat['p99_ms']:7.3f} {t['errors'] + lat['errors']:6.0f}"
            f"   {per_request}"
        )
    router, bare = cpu["shipyard"]["router"], cpu["uvicorn proxy"]["router"]
    print(
        f"Shipyard's router CPU per request / the bare uvicorn proxy's: {router:.0f} / {bare:.0f} µs = "
        f"{router / bare:.2f} (goal <= 1)"
    )
    if peers:
        print(
            f"Shipyard throughput / best of MLflow and BentoML: {results['shipyard']['throughput']['rps'] / max(peers):.2f} (goal >= 1)"
        )
    print(f"Shipyard's added p50 over its model server: {added:.3f} ms (goal <= 0.3)")
    shutil.rmtree(HERE / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
