"""Job environments: framework images and requirements.txt as cached Python environments."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client, wait_for
from tests.integration.test_training import BUCKET, PYTORCH_IMAGE, _create, _wait

REQUIREMENTS_SCRIPT = """
import sklearn, tabulate, sys
print("sklearn", sklearn.__version__, "tabulate", tabulate.__version__, "python", sys.executable)
"""


@pytest.fixture(scope="module", autouse=True)
def own_environments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This module watches environments being built, listed and pruned: a cache of its own, not the
    one the rest of the run shares (tests/conftest.py)."""
    folder = tmp_path_factory.mktemp("own-envs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIPYARD_ENVS_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def env_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("env-server")) as server:
        boto_client("s3", server.url).create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture(scope="module")
def clients(env_server: ServerProcess) -> tuple[Any, Any, Any]:
    return tuple(boto_client(s, env_server.url) for s in ("sagemaker", "s3", "logs"))  # type: ignore[return-value]


def _log_lines(logs: Any, name: str) -> list[str]:
    events = logs.filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
    )
    return [e["message"] for e in events["events"]]


def test_framework_image_and_requirements_txt_build_once_then_reuse(clients: tuple[Any, Any, Any]) -> None:
    sm, s3, logs = clients
    files = {"train.py": REQUIREMENTS_SCRIPT, "requirements.txt": "tabulate==0.9.0\n"}
    first = _create(sm, s3, "", extra_files=files)
    description = _wait(sm, first, timeout=300)
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    lines = _log_lines(logs, first)
    assert any(line.startswith("sklearn 1.2.2 tabulate 0.9.0 python ") for line in lines), lines
    assert any("with requirements.txt: new environment" in line for line in lines)
    second = _create(sm, s3, "", extra_files=files)
    assert _wait(sm, second, timeout=60)["TrainingJobStatus"] == "Completed"
    # the second job reuses the environment (how fast that is: benchmarks/environment_resolution.py)
    assert any("with requirements.txt: cached environment" in line for line in _log_lines(logs, second))


def test_bad_requirement_fails_the_job_with_the_resolver_message(clients: tuple[Any, Any, Any]) -> None:
    sm, s3, _ = clients
    files = {"train.py": "print('never runs')", "requirements.txt": "shipyard-no-such-package-xyz==1.0\n"}
    description = _wait(sm, _create(sm, s3, "", extra_files=files), timeout=120)
    assert description["TrainingJobStatus"] == "Failed"
    reason = description["FailureReason"]
    assert reason.startswith("ClientError: could not install the job's environment")
    assert "shipyard-no-such-package-xyz" in reason


def test_unknown_and_private_images_are_refused_at_creation(clients: tuple[Any, Any, Any]) -> None:
    sm, s3, _ = clients
    for image in ["123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own:1", "docker.io/library/python:3.11"]:
        with pytest.raises(ClientError) as exc:
            _create(sm, s3, "pass", image=image)
        assert exc.value.response["Error"]["Code"] == "ValidationException"
        assert "container engine" in exc.value.response["Error"]["Message"]
        assert "sagemaker-scikit-learn" in exc.value.response["Error"]["Message"]


def test_envs_cli_lists_and_prunes(env_server: ServerProcess, clients: tuple[Any, Any, Any]) -> None:
    sm, s3, _ = clients
    _wait(sm, _create(sm, s3, "print('x')"), timeout=300)
    listed = subprocess.run(
        [sys.executable, "-m", "shipyard", "envs", "list", "--json", "--data-dir", str(env_server.data_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "sklearn 1.2-1" in listed and '"jobs":' in listed
    kept = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipyard",
            "envs",
            "prune",
            "--unused-days",
            "1",
            "--data-dir",
            str(env_server.data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert kept.startswith("Removed 0 environment(s)")


def test_sdk_framework_estimators_get_their_framework(
    env_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    import sagemaker
    from sagemaker.pytorch import PyTorch
    from sagemaker.xgboost import XGBoost

    monkeypatch.setenv("AWS_ENDPOINT_URL", env_server.url)
    session = sagemaker.Session(
        boto_session=boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"),
        sagemaker_client=boto_client("sagemaker", env_server.url),
        default_bucket="sdk-envs",
    )
    (tmp_path / "xgb.py").write_text(
        "import numpy as np, xgboost as xgb\n"
        "x = np.random.rand(50, 3); y = (x[:, 0] > 0.5).astype(int)\n"
        "booster = xgb.train({'objective': 'binary:logistic'}, xgb.DMatrix(x, label=y), 5)\n"
        "booster.save_model('/opt/ml/model/xgboost-model')\nprint('xgboost', xgb.__version__)\n"
    )
    (tmp_path / "torch_train.py").write_text("import torch\nprint('torch', torch.__version__)\n")
    common = {
        "role": "arn:aws:iam::000000000000:role/R",
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "source_dir": str(tmp_path),
        "sagemaker_session": session,
    }
    xgb_estimator = XGBoost(entry_point="xgb.py", framework_version="1.7-1", **common)
    xgb_estimator.fit(wait=True, logs=False)
    torch_estimator = PyTorch(
        entry_point="torch_train.py", framework_version="2.1", py_version="py310", **common
    )
    torch_estimator.fit(wait=True, logs=False)
    logs = boto_client("logs", env_server.url)
    assert "xgboost 1.7.6" in _log_lines(logs, xgb_estimator.latest_training_job.name)
    torch_lines = _log_lines(logs, torch_estimator.latest_training_job.name)
    assert any(line.startswith("torch 2.13.0") for line in torch_lines)
    assert any("PyTorch 2.1 requested; using PyTorch 2.13.0+cpu" in line for line in torch_lines)
    # the container's pandas and scikit-learn are not the server's: the job gets its own environment
    [where] = [line for line in torch_lines if "environment pytorch 2.1: " in line]
    assert "new environment" in where or "cached environment" in where, where


PYTORCH_CONTAINER_SCRIPT = """
import importlib.metadata as m, importlib.util, pkg_resources
import boto3, numpy as np, pandas as pd, PIL, requests, scipy, sklearn, torch
from sklearn.linear_model import LogisticRegression

frame = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20) % 2})
model = LogisticRegression().fit(frame[["x"]], frame["y"])
tensor = torch.tensor(frame["x"].to_numpy())
cuda = [d.metadata["Name"] for d in m.distributions() if d.metadata["Name"].startswith("nvidia")]
print("container pandas", pd.__version__, "sklearn", sklearn.__version__, "scipy", scipy.__version__,
      "torch", torch.__version__, "cuda packages", cuda)
print("torchvision importable", importlib.util.find_spec("torchvision") is not None)
"""


def test_a_pytorch_job_has_what_aws_pytorch_container_has(clients: tuple[Any, Any, Any]) -> None:
    """PyTorch 2.1's container: pandas 2.1, scikit-learn 1.3, scipy, Pillow, boto3, requests and
    pkg_resources beside the site's CPU torch (never a CUDA wheel); torchvision only where the site
    has a CPU build of it, and the log says so (docs/environments.md)."""
    sm, s3, logs = clients
    name = _create(sm, s3, PYTORCH_CONTAINER_SCRIPT, image=PYTORCH_IMAGE, max_runtime=600)
    description = _wait(sm, name, timeout=600)
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    lines = _log_lines(logs, name)
    [versions] = [line for line in lines if line.startswith("container pandas")]
    assert re.fullmatch(
        r"container pandas 2\.1\.\d+ sklearn 1\.3\.\d+ scipy 1\.11\.\d+ torch 2\.13\.0\+cpu cuda packages \[\]",
        versions,
    ), versions
    assert "torchvision importable False" in lines
    assert any("torchvision is not installed: this site provides no CPU build" in line for line in lines)


LAYER_SCRIPT = """
import importlib, importlib.util, os, subprocess, sys
print("inflection before", importlib.util.find_spec("inflection") is not None, flush=True)
subprocess.check_call(["pip", "install", "-q", "-r", "deps/requirements.txt"])  # as the SDK v3's driver does
importlib.invalidate_caches()
import inflection, sklearn
print("installed", inflection.camelize("pip_layer"), "at", os.path.dirname(os.path.dirname(inflection.__file__)))
print("sklearn from", os.path.dirname(os.path.dirname(sklearn.__file__)), flush=True)
"""
SECOND_SCRIPT = """
import importlib.util, subprocess
print("second sees inflection", importlib.util.find_spec("inflection") is not None, flush=True)
"""


def _site_packages_with(root: Path, package: str) -> list[Path]:
    return [p.parent for p in root.glob(f"*/lib/python*/site-packages/{package}")]


def test_pip_in_a_job_installs_into_its_own_layer(
    env_server: ServerProcess, clients: tuple[Any, Any, Any], own_environments: Path
) -> None:
    """pip run by the job (the SDK v3's requirements, a remote function's bootstrap) installs what
    the shared environment lacks into the job's own layer, finds what it has, and leaves it as it is."""
    import importlib.util

    sm, s3, logs = clients
    assert importlib.util.find_spec("inflection") is None  # not in the server's own environment
    files = {
        "train.py": LAYER_SCRIPT,
        # Not /opt/ml/code/requirements.txt (the agent installs that one into a cached environment):
        # a file the job's own code hands to pip, as SourceCode(requirements="deps/...") does.
        "deps/requirements.txt": "inflection==0.5.1\nscikit-learn==1.2.2\n",
    }
    first = _create(sm, s3, "", extra_files=files)
    description = _wait(sm, first, timeout=300)
    lines = _log_lines(logs, first)
    assert description["TrainingJobStatus"] == "Completed", (description.get("FailureReason"), lines)
    assert "inflection before False" in lines
    assert "installed PipLayer at /opt/ml/.shipyard-layer/lib/python3.11/site-packages" in lines, lines
    # scikit-learn 1.2.2 was the shared environment's already: found there, not installed again.
    [sklearn_line] = [line for line in lines if line.startswith("sklearn from ")]
    assert "/opt/ml/" not in sklearn_line
    assert any("own layer (/opt/ml/.shipyard-layer)" in line for line in lines)
    # The shared environments are as they were, and the next job does not see the package.
    assert _site_packages_with(own_environments, "inflection") == []
    assert importlib.util.find_spec("inflection") is None
    second = _create(sm, s3, SECOND_SCRIPT)
    assert _wait(sm, second, timeout=120)["TrainingJobStatus"] == "Completed"
    assert "second sees inflection False" in _log_lines(logs, second)


def test_environments_get_their_bytecode_and_older_ones_are_compiled_after_first_use(tmp_path: Path) -> None:
    """Jobs see environments read-only: without bytecode compiled in, each job would compile what it
    imports again (seconds for scikit-learn and pandas). How much it saves: benchmarks/job_imports.py."""
    from importlib.util import cache_from_source

    from shipyard.envs import EnvironmentCache, EnvironmentSpec
    from shipyard.envs._cache import has_bytecode

    cache = EnvironmentCache(tmp_path, allow_server_python=False)
    spec = EnvironmentSpec("tabulate", ("tabulate==0.9.0",))
    lines: list[str] = []
    built = cache.resolve(spec, log=lines.append)
    assert built.how == "built"
    assert any("bytecode in the background" in line for line in lines)
    folder = built.python.parent.parent
    [module] = folder.glob("lib/python*/site-packages/tabulate/__init__.py")
    wait_for(lambda: has_bytecode(folder), timeout=120, what="the environment's bytecode")
    assert Path(cache_from_source(str(module))).is_file()

    # An environment built before environments held bytecode: no __pycache__, no flag in its marker.
    for pycache in list(folder.rglob("__pycache__")):
        subprocess.run(["rm", "-rf", str(pycache)], check=True)
    marker = folder / "shipyard-env.json"
    marker.write_text(re.sub(r', "bytecode": true', "", marker.read_text()))
    assert not has_bytecode(folder)
    lines.clear()
    assert cache.resolve(spec, log=lines.append).how == "cached"
    wait_for(lambda: has_bytecode(folder), timeout=120, what="the older environment's bytecode")
    assert Path(cache_from_source(str(module))).is_file()
    lines.clear()
    cache.resolve(spec, log=lines.append)  # compiled once, not on every use
    assert lines == []


HOSTILE_SETUP = """
import pathlib
pathlib.Path({marker!r}).write_text("setup.py ran on the server's machine")
from setuptools import setup
setup(name="evilpkg", version="0.1")
"""


def test_a_requirements_txt_cannot_run_code_or_read_files_outside_the_sandbox(
    clients: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    """The server installs a job's requirements.txt outside the job's sandbox: a source distribution
    (its setup.py runs at build) from the job's own index, a folder or file of the server's machine,
    are refused, and nothing of theirs runs."""
    import http.server
    import io
    import tarfile
    import threading

    sm, s3, _ = clients
    marker = tmp_path / "pwned"
    source = HOSTILE_SETUP.format(marker=str(marker))
    (tmp_path / "evilpkg").mkdir()
    (tmp_path / "evilpkg" / "setup.py").write_text(source)
    index = tmp_path / "index" / "simple" / "evilpkg"
    index.mkdir(parents=True)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, text in {
            "setup.py": source,
            "PKG-INFO": "Metadata-Version: 2.1\nName: evilpkg\nVersion: 0.1\n",
        }.items():
            info = tarfile.TarInfo(f"evilpkg-0.1/{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    (index / "evilpkg-0.1.tar.gz").write_bytes(archive.getvalue())
    (index / "index.html").write_text('<a href="evilpkg-0.1.tar.gz">evilpkg-0.1.tar.gz</a>\n')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = lambda *a, **kw: Quiet(*a, directory=str(tmp_path / "index"), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        attempts = {
            f"--extra-index-url http://127.0.0.1:{httpd.server_address[1]}/simple\nevilpkg==0.1\n": (
                "building from source is disabled"
            ),
            f"evilpkg @ file://{tmp_path / 'evilpkg'}\n": "a package's URL is http(s)",
            f"{tmp_path / 'evilpkg'}\n": "not a requirement",
            "-r /etc/shadow\n": "the option -r",
        }
        names = {
            requirements: _create(
                sm, s3, "", extra_files={"train.py": "print('never runs')", "requirements.txt": requirements}
            )
            for requirements in attempts
        }
        for requirements, said in attempts.items():
            description = _wait(sm, names[requirements], timeout=120)
            assert description["TrainingJobStatus"] == "Failed", requirements
            assert said in description["FailureReason"], (requirements, description["FailureReason"])
            assert "root:" not in description["FailureReason"]
    finally:
        httpd.shutdown()
    assert not marker.exists(), marker.read_text()
