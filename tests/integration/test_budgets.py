"""Budgets that hold: deny launches past the limit (also two at once), stop work at it, alert."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

import shipyard
from shipyard.core.costs import money
from shipyard.server import ServerProcess
from tests._support import boto_client
from tests.integration.test_training import BUCKET, _create
from tests.integration.test_training import _wait as _wait_job

SLEEP = "import time\nprint('working', flush=True)\ntime.sleep(120)\n"


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(
        tmp_path_factory.mktemp("budget-server"), env={"SHIPYARD_COST_CHECK_SECONDS": "1"}
    ) as server:
        boto_client("s3", server.url).create_bucket(Bucket=BUCKET)
        yield server


def _budget(server: ServerProcess, **body: Any) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/api/v1/budgets", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _tags(project: str) -> dict[str, Any]:
    return {"Tags": [{"Key": "Project", "Value": project}]}


def test_deny_refuses_a_launch_whose_worst_case_crosses_the_limit(budget_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", budget_server.url), boto_client("s3", budget_server.url)
    _budget(budget_server, name="deny-one", limit_usd="0.05", scope={"Project": "one"}, actions=["deny"])
    # An ml.m5.large trains at 0.115 an hour: 30 minutes at most may cost 0.0575, 10 minutes 0.019167.
    with pytest.raises(ClientError, match="ResourceLimitExceeded") as refused:
        _create(sm, s3, SLEEP, max_runtime=1800, extra=_tags("one"))
    message = refused.value.response["Error"]["Message"]
    assert "Budget 'deny-one' (monthly, limit $0.05)" in message and "$0.00 spent" in message
    assert "may cost up to $0.0575 (1 x ml.m5.large x 30 min)" in message
    fits = _create(sm, s3, "print('done')\n", max_runtime=600, extra=_tags("one"))
    assert _wait_job(sm, fits)["TrainingJobStatus"] == "Completed"
    other = _create(sm, s3, "print('done')\n", max_runtime=1800, extra=_tags("another"))  # not in its scope
    assert _wait_job(sm, other)["TrainingJobStatus"] == "Completed"
    estimate = httpx.post(
        f"{budget_server.url}/api/v1/estimates",
        json={
            "kind": "training",
            "request": {
                "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2},
                "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
                **_tags("one"),
            },
        },
    ).json()
    assert estimate["usd"] == "0.115000" and estimate["per_hour_usd"] == "0.230000"
    assert estimate["basis"] == "2 x ml.m5.large x 30 min" and estimate["denied_by"] == ["deny-one"]
    alerts = httpx.get(f"{budget_server.url}/api/v1/alerts", params={"budget": "deny-one"}).json()
    assert [a["kind"] for a in alerts] == ["denied"]


def test_two_launches_at_once_cannot_both_slip_under_the_limit(budget_server: ServerProcess) -> None:
    _budget(budget_server, name="deny-race", limit_usd="0.05", scope={"Project": "race"}, actions=["deny"])
    # Each may cost 0.115 x 939 s / 3600 = 0.029996: one fits under 0.05, two do not.
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def launch() -> None:
        sm, s3 = boto_client("sagemaker", budget_server.url), boto_client("s3", budget_server.url)
        barrier.wait()
        try:
            outcomes.append(_create(sm, s3, SLEEP, max_runtime=939, extra=_tags("race")))
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o == "ResourceLimitExceeded" for o in outcomes) == [False, True], outcomes
    sm = boto_client("sagemaker", budget_server.url)
    [started] = [o for o in outcomes if o != "ResourceLimitExceeded"]
    status = httpx.get(f"{budget_server.url}/api/v1/budgets/deny-race").json()
    assert 0.029 < float(status["committed_usd"]) + float(status["spend_usd"]) <= 0.030
    sm.stop_training_job(TrainingJobName=started)
    _wait_job(sm, started)


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_stop_ends_running_work_at_the_limit_and_alerts_reach_the_webhook(
    budget_server: ServerProcess,
) -> None:
    hook = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        _budget(
            budget_server,
            name="stopper",
            limit_usd="0.0001",  # about 3 seconds of an ml.m5.large
            scope={"Project": "stop"},
            actions=["stop"],
            thresholds=[50, 100],
            notify=f"http://127.0.0.1:{hook.server_port}/alerts",
        )
        sm, s3 = boto_client("sagemaker", budget_server.url), boto_client("s3", budget_server.url)
        name = _create(sm, s3, SLEEP, max_runtime=600, extra=_tags("stop"))
        ended = _wait_job(sm, name, timeout=60)
        assert ended["TrainingJobStatus"] == "Stopped"
        kinds = [
            a["kind"]
            for a in httpx.get(f"{budget_server.url}/api/v1/alerts", params={"budget": "stopper"}).json()
        ]
        assert sorted(kinds) == ["stopped", "threshold", "threshold"]
        deadline = time.monotonic() + 10
        while len(_Hook.received) < 3:
            assert time.monotonic() < deadline, _Hook.received
            time.sleep(0.05)
        assert {(r["kind"], r.get("threshold")) for r in _Hook.received} == {
            ("threshold", 50),
            ("threshold", 100),
            ("stopped", None),
        }
    finally:
        hook.shutdown()


def test_budgets_from_the_cli_and_bad_budgets_named(budget_server: ServerProcess) -> None:
    def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shipyard", *args, "--url", budget_server.url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},  # a wide terminal: table cells stay whole
        )

    made = shipyard("budgets", "create", "lab", "--limit", "100", "--tag", "Project=lab", "--action", "deny")
    assert made.returncode == 0 and "Budget lab: $0.00 of $100.00 spent" in made.stdout, made.stderr
    listed = shipyard("budgets", "list")
    assert "lab" in listed.stdout and "Project=lab" in listed.stdout and "deny" in listed.stdout
    again = shipyard("budgets", "create", "lab", "--limit", "5")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert shipyard("alerts").returncode == 0
    assert shipyard("budgets", "delete", "lab").returncode == 0
    for body, field in (
        ({"name": "x", "limit_usd": "-1"}, "limit_usd"),
        ({"name": "x", "limit_usd": "1", "period": "weekly"}, "period"),
        ({"name": "x", "limit_usd": "1", "actions": ["shout"]}, "actions"),
        ({"name": "x", "limit_usd": "1", "notify": "http://example.com/hook"}, "notify"),
        ({"name": "bad name!", "limit_usd": "1"}, "name"),
    ):
        answer = httpx.post(f"{budget_server.url}/api/v1/budgets", json=body)
        assert answer.status_code == 400 and answer.json()["field"] == field, answer.text


# 96 vCPUs, 1152 GiB and 8 GPUs (SageMaker's 37.688 an hour): more than this machine has, so
# fit-to-machine scales it down, and the site charges it as the type that gives what it got.
P4D = "ml.p4d.24xlarge"


def _scaled_down(project: str, seconds: int) -> dict[str, Any]:
    return {
        "ResourceConfig": {"InstanceType": P4D, "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": seconds},
        **_tags(project),
    }


def _estimate(server: ServerProcess, request: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/api/v1/estimates", json={"kind": "training", "request": request})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_a_deny_budget_lets_a_scaled_down_job_run_at_what_it_will_be_charged(
    budget_server: ServerProcess,
) -> None:
    sm, s3 = boto_client("sagemaker", budget_server.url), boto_client("s3", budget_server.url)
    # 30 minutes of it: at the type that gives what this machine grants it, SageMaker's beside it
    estimate = _estimate(budget_server, _scaled_down("scaled", 1800))
    granted, asked, billed_as = (
        Decimal(estimate["usd"]),
        Decimal(estimate["sagemaker_usd"]),
        estimate["billed_as"],
    )
    assert billed_as and asked == Decimal("18.844") and granted < asked
    assert estimate["basis"] == f"1 x {P4D} x 30 min, as {billed_as}, what this machine gives it"
    # a limit below what SageMaker would charge for the type asked, above what it costs here
    limit = (granted + asked) / 2
    _budget(
        budget_server, name="deny-scaled", limit_usd=str(limit), scope={"Project": "scaled"}, actions=["deny"]
    )
    assert _estimate(budget_server, _scaled_down("scaled", 1800))["denied_by"] == []
    name = _create(sm, s3, "print('on what it was given')\n", extra=_scaled_down("scaled", 1800))
    assert _wait_job(sm, name)["TrainingJobStatus"] == "Completed"
    view = httpx.get(f"{budget_server.url}/api/v1/training-jobs/{name}").json()
    assert view["scaled_down"] and view["billed_as"] == billed_as  # charged as it was estimated
    assert Decimal(view["price_per_hour_usd"]) == Decimal(estimate["per_hour_usd"])
    assert Decimal(view["cost_usd"]) < Decimal(view["sagemaker_cost_usd"])

    # a budget that cannot take even what it costs here refuses it, saying how it was priced
    _budget(
        budget_server,
        name="deny-below",
        limit_usd=str(granted / 2),
        scope={"Project": "below"},
        actions=["deny"],
    )
    with pytest.raises(ClientError, match="ResourceLimitExceeded") as refused:
        _create(sm, s3, "print('never')\n", extra=_scaled_down("below", 1800))
    message = refused.value.response["Error"]["Message"]
    assert "Budget 'deny-below'" in message
    assert (
        f"may cost up to {money(granted)} (1 x {P4D} x 30 min, as {billed_as}, what this machine gives it)"
        in message
    )


def test_the_launch_estimate_of_a_scaled_down_job_shows_what_it_will_cost_here(
    budget_server: ServerProcess, tmp_path: Path
) -> None:
    script = tmp_path / "small.py"
    script.write_text("print('fits in what it is given')\n")
    day = _estimate(budget_server, _scaled_down("cli", 86_400))  # SageMaker's default: a day
    per_hour, billed_as = money(Decimal(day["per_hour_usd"])), day["billed_as"]
    assert (
        billed_as
        and Decimal(day["per_hour_usd"]) < Decimal("37.688")
        and day["sagemaker_usd"] == "904.512000"
    )
    train = ["train", str(script), "--instance-type", P4D, "--tag", "Project=cli", "--url", budget_server.url]
    launched = subprocess.run(
        [sys.executable, "-m", "shipyard", *train],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert (
        f"{per_hour} an hour (1 x {P4D}, as {billed_as}, what this machine gives it); "
        "on SageMaker $37.69 an hour; with no max_run it may run 24 h"
    ) in launched.stdout, launched.stdout
    assert "fits in what it is given" in launched.stdout

    # the SDK's estimate, with max_run: at most what it costs here, SageMaker's for the type asked beside it
    estimator = shipyard.Estimator(
        script, instance_type=P4D, max_run=1800, connection=shipyard.connect(budget_server.url)
    )
    found = estimator.estimate()
    assert found["billed_as"] == billed_as and found["sagemaker_usd"] == "18.844000"
    assert Decimal(found["usd"]) == (Decimal(day["per_hour_usd"]) / 2).quantize(Decimal("0.000001"))
    assert found["basis"] == f"1 x {P4D} x 30 min, as {billed_as}, what this machine gives it"
