"""Notebook instances through boto3: a real JupyterLab in its sandbox, reached through the
presigned URL, with the Shipyard connection (and no master key) in its environment; stopped,
started again with its home folder's files kept, refused deletion while in service, deleted."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from shipyard.services.identity import ADMIN_CREDENTIALS, read_credentials
from tests._support import boto_client

pytest.importorskip("jupyterlab", reason="the notebooks extra (jupyterlab) is not installed")

MASTER_KEY = "AKIANOTEBOOKTESTS001"
MASTER_SECRET = "notebook-tests-master-secret-0123456789ab"
ROLE = "arn:aws:iam::000000000000:role/NotebookRole"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"SHIPYARD_ACCESS_KEY_ID": MASTER_KEY, "SHIPYARD_SECRET_ACCESS_KEY": MASTER_SECRET}
    with ServerProcess(tmp_path_factory.mktemp("notebooks") / "data", env=env) as server:
        yield server


@pytest.fixture(scope="module")
def sm(server: ServerProcess) -> Any:
    return boto_client(
        "sagemaker", server.url, aws_access_key_id=MASTER_KEY, aws_secret_access_key=MASTER_SECRET
    )


def _wait(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _status(sm: Any, name: str, wanted: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = sm.describe_notebook_instance(NotebookInstanceName=name)
        if found["NotebookInstanceStatus"] == "Failed" and wanted != "Failed":
            raise AssertionError(f"the notebook failed: {found.get('FailureReason')}")
        return found if found["NotebookInstanceStatus"] == wanted else None

    return _wait(f"{name} {wanted}", check)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _jupyter_processes(data_dir: Path, name: str) -> list[tuple[int, dict[str, str]]]:
    """The Jupyter server processes running for notebook ``name`` (found by their config file),
    with their environments."""
    config = str(data_dir / "notebooks" / name / "run" / "jupyter_server_config.py")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if f"--config={config}".encode() not in argv or b"jupyterlab" not in argv:
                continue
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        environ = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        if "bwrap" not in argv[0].decode():
            found.append((int(entry.name), environ))
    return found


def _run_in_kernel(browser: httpx.Client, base: str, code: str, timeout: float = 120) -> str:
    """Run ``code`` in a new kernel of the notebook's Jupyter server, as a notebook cell runs
    (Jupyter's REST API and its kernel websocket, signed in by the link's cookie); its output."""
    import websocket  # websocket-client, a JupyterLab dependency

    xsrf = browser.cookies.get("_xsrf", "")
    kernel = browser.post(f"{base}/api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": xsrf})
    assert kernel.status_code in (200, 201), kernel.text
    kernel_id = kernel.json()["id"]
    session = uuid.uuid4().hex
    cookies = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    ws = websocket.create_connection(
        f"{base.replace('http://', 'ws://')}/api/kernels/{kernel_id}/channels?session_id={session}",
        header=[f"Cookie: {cookies}"],
        timeout=timeout,
    )
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "test",
                    "session": session,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": False, "allow_stdin": False},
                "channel": "shell",
            }
        )
    )
    output = []
    try:
        while True:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "error":
                output.append("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(output)
    finally:
        ws.close()
        browser.delete(f"{base}/api/kernels/{kernel_id}", headers={"X-XSRFToken": xsrf})


def test_notebook_lifecycle(server: ServerProcess, sm: Any) -> None:
    name = "lesson-notebook"
    arn = sm.create_notebook_instance(
        NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn=ROLE, VolumeSizeInGB=5
    )["NotebookInstanceArn"]
    assert arn.endswith(":notebook-instance/lesson-notebook")
    assert sm.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceStatus"] in (
        "Pending",
        "InService",
    )
    described = _status(sm, name, "InService")
    assert described["InstanceType"] == "ml.t3.medium" and described["RoleArn"] == ROLE
    listed = sm.list_notebook_instances(NameContains="lesson")["NotebookInstances"]
    assert [(n["NotebookInstanceName"], n["NotebookInstanceStatus"]) for n in listed] == [(name, "InService")]

    # Deleting one in service is refused, as SageMaker refuses it.
    with pytest.raises(ClientError) as refused:
        sm.delete_notebook_instance(NotebookInstanceName=name)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Status (InService) not in ([Stopped, Failed])" in refused.value.response["Error"]["Message"]

    # The presigned URL opens JupyterLab; its cookie then lets the browser call Jupyter's API.
    url = sm.create_presigned_notebook_instance_url(
        NotebookInstanceName=name, SessionExpirationDurationInSeconds=1800
    )["AuthorizedUrl"]
    assert urllib.parse.urlparse(url).hostname == "127.0.0.1"
    base = url.split("/lab?", 1)[0]
    assert httpx.get(f"{base}/api/status").status_code == 403  # nothing without the link
    with httpx.Client(follow_redirects=True) as browser:
        page = browser.get(url)
        assert page.status_code == 200 and "JupyterLab" in page.text
        status = browser.get(f"{base}/api/status")
        assert status.status_code == 200 and "last_activity" in status.json()
        # A file written in the notebook's folder (Jupyter's contents API, as the file browser does).
        xsrf = browser.cookies.get("_xsrf", "")
        saved = browser.put(
            f"{base}/api/contents/kept.txt",
            json={"type": "file", "format": "text", "content": "survives a stop"},
            headers={"X-XSRFToken": xsrf},
        )
        assert saved.status_code in (200, 201), saved.text
        # The lesson's first cell, unchanged: the SDK finds the notebook's role and account.
        output = _run_in_kernel(
            browser,
            base,
            "import os, boto3, sagemaker\n"
            "print('role', sagemaker.get_execution_role())\n"
            "print('caller', boto3.client('sts').get_caller_identity()['Arn'])\n"
            "print('key', os.environ.get('AWS_ACCESS_KEY_ID'))\n"
            "print('home', os.path.expanduser('~'), os.getcwd())\n",
        )
        assert f"role {ROLE}" in output, output
        assert "caller arn:aws:sts::000000000000:assumed-role/NotebookRole/lesson-notebook" in output, output
        assert "key None" in output and "home /opt/ml/home /opt/ml/home/SageMaker" in output, output

    # Its environment: the Shipyard connection and its own credentials' source, never the key.
    processes = _jupyter_processes(server.data_dir, name)
    assert processes, "no Jupyter server process found"
    _, environ = processes[0]
    assert environ["AWS_ENDPOINT_URL"] == server.url
    assert environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert MASTER_KEY not in json.dumps(environ) and MASTER_SECRET not in json.dumps(environ)
    assert "AWS_ACCESS_KEY_ID" not in environ and "AWS_SECRET_ACCESS_KEY" not in environ
    # The credentials it fetches (as boto3's container provider does) act as its role.
    fetched = httpx.get(
        environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
        headers={"Authorization": environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]},
    )
    assert fetched.status_code == 200
    session = fetched.json()
    assert session["AccessKeyId"].startswith("ASIA") and session["AccessKeyId"] != MASTER_KEY
    sts = boto_client(
        "sts",
        server.url,
        aws_access_key_id=session["AccessKeyId"],
        aws_secret_access_key=session["SecretAccessKey"],
        aws_session_token=session["Token"],
    )
    assert (
        sts.get_caller_identity()["Arn"]
        == "arn:aws:sts::000000000000:assumed-role/NotebookRole/lesson-notebook"
    )
    assert (
        httpx.get(
            environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"], headers={"Authorization": "not-the-token"}
        ).status_code
        == 403
    )

    # Stop: Stopped, the process gone, the credentials revoked.
    pids = [pid for pid, _ in processes]
    sm.stop_notebook_instance(NotebookInstanceName=name)
    _status(sm, name, "Stopped")
    assert not [pid for pid in pids if _running(pid)]
    with pytest.raises(ClientError) as revoked:
        sts.get_caller_identity()
    assert revoked.value.response["Error"]["Code"] in ("InvalidClientTokenId", "InvalidToken")
    with pytest.raises(ClientError) as stopped:
        sm.create_presigned_notebook_instance_url(NotebookInstanceName=name)
    assert "not in service" in stopped.value.response["Error"]["Message"]

    # Update while stopped, then start again: the home folder's file is still there.
    sm.update_notebook_instance(NotebookInstanceName=name, InstanceType="ml.t3.large", VolumeSizeInGB=10)
    updated = sm.describe_notebook_instance(NotebookInstanceName=name)
    assert (updated["InstanceType"], updated["VolumeSizeInGB"]) == ("ml.t3.large", 10)
    sm.start_notebook_instance(NotebookInstanceName=name)
    _status(sm, name, "InService")
    url = sm.create_presigned_notebook_instance_url(NotebookInstanceName=name)["AuthorizedUrl"]
    base = url.split("/lab?", 1)[0]
    with httpx.Client(follow_redirects=True) as browser:
        assert browser.get(url).status_code == 200
        kept = browser.get(f"{base}/api/contents/kept.txt", params={"content": "1"})
        assert kept.status_code == 200 and kept.json()["content"] == "survives a stop"

    sm.stop_notebook_instance(NotebookInstanceName=name)
    _status(sm, name, "Stopped")
    sm.delete_notebook_instance(NotebookInstanceName=name)

    def gone() -> bool:
        try:
            sm.describe_notebook_instance(NotebookInstanceName=name)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ValidationException"
            return True
        return False

    _wait("the notebook deleted", gone)
    assert not (server.data_dir / "notebooks" / name).exists()


def test_bad_requests_name_the_field(sm: Any) -> None:
    with pytest.raises(ClientError) as bad_type:
        sm.create_notebook_instance(
            NotebookInstanceName="bad-type", InstanceType="ml.p3.2xlarge", RoleArn=ROLE
        )
    assert bad_type.value.response["Error"]["Code"] == "ValidationException"
    assert "ml.p3.2xlarge" in bad_type.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as lifecycle:
        sm.create_notebook_instance(
            NotebookInstanceName="with-lifecycle",
            InstanceType="ml.t3.medium",
            RoleArn=ROLE,
            LifecycleConfigName="setup",
        )
    assert "LifecycleConfigName" in lifecycle.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as missing:
        sm.describe_notebook_instance(NotebookInstanceName="no-such-notebook")
    assert missing.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as stop_missing:
        sm.stop_notebook_instance(NotebookInstanceName="no-such-notebook")
    assert stop_missing.value.response["Error"]["Code"] == "ValidationException"


def test_without_jupyterlab_the_notebook_fails_saying_how_to_install_it(tmp_path: Path) -> None:
    # A server whose Python cannot import jupyterlab: a folder shadowing it on its path.
    shadow = tmp_path / "shadow"
    (shadow / "jupyterlab").mkdir(parents=True)
    (shadow / "jupyterlab" / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    shadow_spec = shadow / "sitecustomize.py"
    shadow_spec.write_text(
        "import importlib.util, sys\n"
        "_find = importlib.util.find_spec\n"
        "def find_spec(name, package=None):\n"
        "    return None if name == 'jupyterlab' else _find(name, package)\n"
        "importlib.util.find_spec = find_spec\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    with ServerProcess(tmp_path / "data", env=env) as server:
        sm = boto_client("sagemaker", server.url)
        sm.create_notebook_instance(
            NotebookInstanceName="no-jupyter", InstanceType="ml.t3.medium", RoleArn=ROLE
        )
        failed = _status(sm, "no-jupyter", "Failed")
        assert "pip install 'shipyard[notebooks]'" in failed["FailureReason"]
        assert "Url" not in failed


def test_idle_notebooks_stop_are_billed_and_come_back_after_a_restart(tmp_path: Path) -> None:
    keys = {"aws_access_key_id": MASTER_KEY, "aws_secret_access_key": MASTER_SECRET}
    env = {"SHIPYARD_ACCESS_KEY_ID": MASTER_KEY, "SHIPYARD_SECRET_ACCESS_KEY": MASTER_SECRET}
    data = tmp_path / "data"
    with ServerProcess(data, env={**env, "SHIPYARD_NOTEBOOK_IDLE_SECONDS": "4"}) as server:
        sm = boto_client("sagemaker", server.url, **keys)
        sm.create_notebook_instance(NotebookInstanceName="idle", InstanceType="ml.t3.medium", RoleArn=ROLE)
        _status(sm, "idle", "InService")
        # Nothing uses it: its Jupyter server reports no activity, and it is stopped.
        stopped = _status(sm, "idle", "Stopped")
        assert "FailureReason" not in stopped
        today = dt.datetime.now(dt.UTC).date()
        ce = boto_client("ce", server.url, **keys)
        by_type = ce.get_cost_and_usage(
            TimePeriod={"Start": today.isoformat(), "End": (today + dt.timedelta(days=1)).isoformat()},
            Granularity="DAILY",
            Metrics=["UsageQuantity"],
            GroupBy=[{"Type": "DIMENSION", "Key": "USAGE_TYPE"}],
        )
        usage = {
            g["Keys"][0]: g["Metrics"]["UsageQuantity"]["Amount"]
            for g in by_type["ResultsByTime"][0]["Groups"]
        }
        assert float(usage["Notebk:ml.t3.medium"]) > 0, usage
    never_idle = {**env, "SHIPYARD_NOTEBOOK_IDLE_SECONDS": "0"}
    with ServerProcess(data, env=never_idle) as server:
        sm = boto_client("sagemaker", server.url, **keys)
        sm.create_notebook_instance(NotebookInstanceName="kept", InstanceType="ml.m5.xlarge", RoleArn=ROLE)
        _status(sm, "kept", "InService")
    # "kept" was in service when its server ended: the next server starts it again.
    with ServerProcess(data, env=never_idle) as server:
        sm = boto_client("sagemaker", server.url, **keys)
        assert _status(sm, "kept", "InService")["InstanceType"] == "ml.m5.xlarge"
        assert (
            sm.describe_notebook_instance(NotebookInstanceName="idle")["NotebookInstanceStatus"] == "Stopped"
        )
        url = sm.create_presigned_notebook_instance_url(NotebookInstanceName="kept")["AuthorizedUrl"]
        with httpx.Client(follow_redirects=True) as browser:
            assert browser.get(url).status_code == 200
        sm.stop_notebook_instance(NotebookInstanceName="kept")
        _status(sm, "kept", "Stopped")


def test_users_see_and_open_only_their_own_notebooks(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", env={"SHIPYARD_AUTH": "on"}) as server:
        admin = read_credentials(server.data_dir / ADMIN_CREDENTIALS)
        assert admin is not None
        iam = boto_client("iam", server.url, aws_access_key_id=admin[0], aws_secret_access_key=admin[1])
        role = "arn:aws:iam::000000000000:role/ShipyardExecutionRole"
        allow = [
            {"Effect": "Allow", "Action": "sagemaker:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role},
        ]
        no_links = {
            "Effect": "Deny",
            "Action": "sagemaker:CreatePresignedNotebookInstanceUrl",
            "Resource": "*",
        }
        clients = {}
        for name, statements in (("alice", allow), ("bob", [*allow, no_links])):
            iam.create_user(UserName=name)
            iam.put_user_policy(
                UserName=name,
                PolicyName="work",
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
            )
            key = iam.create_access_key(UserName=name)["AccessKey"]
            clients[name] = boto_client(
                "sagemaker",
                server.url,
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
            )
        alice, bob = clients["alice"], clients["bob"]
        alice.create_notebook_instance(
            NotebookInstanceName="alice-nb", InstanceType="ml.t3.medium", RoleArn=role
        )
        bob.create_notebook_instance(NotebookInstanceName="bob-nb", InstanceType="ml.t3.medium", RoleArn=role)
        _status(alice, "alice-nb", "InService")
        assert [n["NotebookInstanceName"] for n in bob.list_notebook_instances()["NotebookInstances"]] == [
            "bob-nb"
        ]
        for call in (
            lambda: bob.describe_notebook_instance(NotebookInstanceName="alice-nb"),
            lambda: bob.stop_notebook_instance(NotebookInstanceName="alice-nb"),
            lambda: bob.create_presigned_notebook_instance_url(NotebookInstanceName="alice-nb"),
            lambda: bob.create_presigned_notebook_instance_url(NotebookInstanceName="bob-nb"),
        ):
            with pytest.raises(ClientError) as refused:
                call()
            assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
        url = alice.create_presigned_notebook_instance_url(NotebookInstanceName="alice-nb")["AuthorizedUrl"]
        with httpx.Client(follow_redirects=True) as browser:
            assert browser.get(url).status_code == 200
        _status(bob, "bob-nb", "InService")
        for who, name in ((alice, "alice-nb"), (bob, "bob-nb")):
            who.stop_notebook_instance(NotebookInstanceName=name)
            _status(who, name, "Stopped")
