"""The web console in Debian's headless Chromium, driven by Playwright, against a running server
with real jobs. Screenshots of the main pages go to build/console-screenshots/ for review."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests.integration.test_training import BUCKET, _create, _wait

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "console-screenshots"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

TRAIN = """
import time
for epoch in range(1, 6):
    print(f"epoch {epoch} accuracy={0.5 + epoch / 20:.3f}", flush=True)
print("<img src=x onerror=alert(1)> is only text", flush=True)
open("/opt/ml/model/model.txt", "w").write("m")
"""
SLEEP = "import time\nprint('waiting', flush=True)\ntime.sleep(600)\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # the Stop confirmation
    yield page
    context.close()
    assert errors == [], errors  # no script error on any page


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any]:
    s3 = boto_client("s3", server.url)
    with contextlib.suppress(ClientError):
        s3.create_bucket(Bucket=BUCKET)
    return boto_client("sagemaker", server.url), s3


def _drawn(page: Any, selector: str) -> int:
    """How many points the chart at ``selector`` drew (its box's data-points), once it is drawn."""
    box = page.locator(selector).first
    box.locator("canvas").first.wait_for()
    return int(box.get_attribute("data-points"))


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_training_list_detail_log_and_metric_chart(
    page: Any, server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    sm, s3 = clients
    name = _create(sm, s3, TRAIN, metrics=[{"Name": "accuracy", "Regex": "accuracy=([0-9.]+)"}])
    assert _wait(sm, name)["TrainingJobStatus"] == "Completed"

    page.goto(f"{server.url}/ui#/jobs/training")
    page.get_by_role("link", name=name).click()
    page.wait_for_selector(f"h1:has-text('{name}')")
    log = page.locator("#log")
    log.get_by_text("epoch 5 accuracy=0.750").wait_for()
    assert "<img src=x onerror=alert(1)> is only text" in log.inner_text()  # shown, not parsed
    assert page.locator("#log img").count() == 0
    assert _drawn(page, "[data-chart='accuracy']") == 5
    # the job ran for less than one sampling interval and still has its sample of CPU and memory
    assert _drawn(page, "[data-chart='algo-1: CPU and memory (%)']") >= 1
    assert page.locator("[data-chart='algo-1: GPU and GPU memory (%)']").count() == 0  # no GPU, no chart
    assert "Completed" in page.locator("h1").inner_text()
    assert page.get_by_text("$").first.is_visible()  # its cost
    _shot(page, "training-job")

    page.goto(f"{server.url}/ui#/jobs/training?status=Completed")
    page.get_by_role("link", name=name).wait_for()
    _shot(page, "training-jobs")


def test_a_gpu_jobs_utilization_chart_draws_its_gpu_series(
    page: Any, server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    import json

    sm, s3 = clients
    name = _create(sm, s3, "print('done')\n")
    assert _wait(sm, name)["TrainingJobStatus"] == "Completed"
    # what a GPU instance's samples are served as (NVML's readings; this machine has no GPU to read)
    samples = [
        {"host": "algo-1", "timestamp": f"2026-12-01T12:00:0{i}+00:00", "cpu": 50.0, "memory": 10.0,
         "memory_bytes": 2**30, "disk": 1.0, "gpu": gpu, "gpu_memory": 40.0}
        for i, gpu in enumerate([90.0, 95.0, None, 80.0])
    ]  # fmt: skip
    body = json.dumps({"name": name, "kind": "training", "hosts": {"algo-1": samples}})
    page.route(
        f"**/api/v1/training-jobs/{name}/utilization",
        lambda route: route.fulfill(status=200, content_type="application/json", body=body),
    )
    page.goto(f"{server.url}/ui#/jobs/training/{name}")
    assert _drawn(page, "[data-chart='algo-1: CPU and memory (%)']") == 4
    assert _drawn(page, "[data-chart='algo-1: GPU and GPU memory (%)']") == 4  # GPU memory read at the third
    labels = page.locator("[data-chart='algo-1: GPU and GPU memory (%)'] .u-legend").inner_text()
    assert "GPU %" in labels and "GPU memory %" in labels
    _shot(page, "training-job-gpu")


def test_a_running_job_is_stopped_from_its_page(
    page: Any, server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    sm, s3 = clients
    name = _create(sm, s3, SLEEP, max_runtime=300)
    page.goto(f"{server.url}/ui#/jobs/training/{name}")
    page.locator("#log").get_by_text("waiting").wait_for()
    page.locator("#stop").click()  # confirmed by the dialog handler
    assert _wait(sm, name, timeout=60)["TrainingJobStatus"] == "Stopped"
    page.locator("h1 .status.Stopped").wait_for(timeout=10_000)  # the page follows by itself


def test_a_tuning_jobs_trials_with_the_best_highlighted(
    page: Any, server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    from tests.integration.test_tuning import _create_tuning, _wait_tuning

    sm, s3 = clients
    tuning = _create_tuning(
        sm,
        s3,
        strategy="Random",
        ranges={"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "0.9"}]},
        max_jobs=4,
        parallel=2,
    )
    described = _wait_tuning(sm, tuning)
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    best = described["BestTrainingJob"]["TrainingJobName"]

    page.goto(f"{server.url}/ui#/tuning")
    page.get_by_role("link", name=tuning).click()
    rows = page.locator("#trials tbody tr")
    rows.nth(3).wait_for()
    assert rows.count() == 4
    assert page.locator("#trials tr.best").inner_text().count(best) == 1
    assert rows.first.inner_text().count(best) == 1  # sorted best first
    page.get_by_role("columnheader", name="objective").click()  # worst first
    page.locator("#trials tbody tr:last-child.best").wait_for()
    assert _drawn(page, "#tuning-chart .chart") >= 4
    _shot(page, "tuning-job")


def test_the_home_and_cost_pages_show_spend_with_a_chart(
    page: Any, server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    sm, s3 = clients
    name = _create(sm, s3, TRAIN)
    _wait(sm, name)
    page.goto(f"{server.url}/ui#/costs")
    assert _drawn(page, "#cost-chart .chart") >= 1  # every day of the month so far
    assert "Costs this month" in page.locator("h1").inner_text()
    assert page.get_by_text("training").first.is_visible()
    _shot(page, "costs")
    page.goto(f"{server.url}/ui")
    page.locator("#spend").get_by_text("$").first.wait_for()
    _shot(page, "home")


def test_an_endpoint_page_shows_variants_answers_a_request_and_charts_invocations(
    page: Any, server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    from tests.integration.test_endpoints import BUCKET as ENDPOINT_BUCKET
    from tests.integration.test_endpoints import _deploy, train_iris
    from tests.integration.test_endpoints import _wait as _wait_endpoint

    sm, s3 = clients
    with contextlib.suppress(ClientError):
        s3.create_bucket(Bucket=ENDPOINT_BUCKET)
    endpoint = _deploy(sm, s3, train_iris(sm, s3, name="console-iris"))
    assert _wait_endpoint(sm, endpoint)["EndpointStatus"] == "InService"
    try:
        page.goto(f"{server.url}/ui#/endpoints")
        page.get_by_role("link", name=endpoint).click()
        page.locator("#variants tbody tr").first.wait_for()
        # a scikit-learn model: the invoke box sends what its container reads by default, JSON
        assert page.locator("#content-type").input_value() == "application/json"
        page.locator("#payload").fill("[[5.1, 3.5, 1.4, 0.2]]")
        page.locator("#invoke").click()
        page.locator("#answer").get_by_text("200 OK").wait_for()
        # its model package says it takes CSV: then that is the default, and CSV is answered
        model = sm.describe_model(
            ModelName=sm.describe_endpoint_config(
                EndpointConfigName=sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
            )["ProductionVariants"][0]["ModelName"]
        )["PrimaryContainer"]
        group = f"{endpoint}-models"
        sm.create_model_package_group(ModelPackageGroupName=group)
        sm.create_model_package(
            ModelPackageGroupName=group,
            InferenceSpecification={
                "Containers": [{"Image": model["Image"], "ModelDataUrl": model["ModelDataUrl"]}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
        page.reload()  # the invocation is now in the endpoint's metrics
        assert _drawn(page, "[data-chart='invocations per minute']") >= 1
        assert _drawn(page, "[data-chart='latency (ms, average)']") >= 1
        assert page.locator("#content-type").input_value() == "text/csv"
        page.locator("#payload").fill("5.1,3.5,1.4,0.2")
        page.locator("#invoke").click()
        page.locator("#answer").get_by_text("200 OK").wait_for()
        _shot(page, "endpoint")
    finally:
        sm.delete_endpoint(EndpointName=endpoint)


def test_a_pipeline_is_drawn_with_each_steps_status_and_links_to_its_jobs(
    page: Any, server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    import json
    import uuid

    from tests.integration.test_pipelines import _training
    from tests.integration.test_pipelines import _wait as _wait_run

    sm, s3 = clients
    with contextlib.suppress(ClientError):
        s3.create_bucket(Bucket="pipeline-tests")
    definition = {
        "Version": "2020-12-01",
        "Parameters": [{"Name": "Limit", "Type": "Float", "DefaultValue": 0.5}],
        "Steps": [
            {"Name": "train", "Type": "Training", "Arguments": _training(s3, "print('trained')")},
            {
                "Name": "check",
                "Type": "Condition",
                "DependsOn": ["train"],
                "Arguments": {
                    "Conditions": [
                        {"Type": "LessThan", "LeftValue": 1, "RightValue": {"Get": "Parameters.Limit"}}
                    ],
                    "ElseSteps": [
                        {
                            "Name": "too-high",
                            "Type": "Fail",
                            "Arguments": {"ErrorMessage": "1 is not below the limit"},
                        }
                    ],
                },
            },
        ],
    }
    name = f"console-{uuid.uuid4().hex[:6]}"
    sm.create_pipeline(
        PipelineName=name,
        PipelineDefinition=json.dumps(definition),
        RoleArn="arn:aws:iam::000000000000:role/R",
    )
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    assert _wait_run(sm, arn)["PipelineExecutionStatus"] == "Failed"

    page.goto(f"{server.url}/ui#/pipelines")
    page.get_by_role("link", name=name).click()
    page.locator("#dag [data-step='too-high'] .status.Failed").wait_for()
    assert page.locator("#dag [data-step='train'] .status.Succeeded").count() == 1
    assert "outcome False" in page.locator("#dag [data-step='check']").inner_text()
    assert "1 is not below the limit" in page.locator("pre.error").inner_text()
    _shot(page, "pipeline")
    page.locator("#dag [data-step='train'] a").click()
    page.locator("#log").get_by_text("trained").wait_for()


def test_a_server_with_credentials_asks_for_its_secret_and_the_api_refuses_without_it(
    browser: Any, tmp_path: Path
) -> None:
    import httpx

    env = {"SHIPYARD_ACCESS_KEY_ID": "AKIDCONSOLE", "SHIPYARD_SECRET_ACCESS_KEY": "console-secret"}
    with ServerProcess(tmp_path / "data", env=env) as server:
        assert httpx.get(f"{server.url}/api/v1/jobs/training").status_code == 401
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{server.url}/ui")
        page.get_by_placeholder("secret access key").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        page.locator("#refused").wait_for()  # asked again, saying why (the form before it is gone)
        page.get_by_placeholder("secret access key").fill("console-secret")
        page.get_by_role("button", name="Sign in").click()
        page.locator("#spend").wait_for()
        context.close()


def test_a_chatty_jobs_log_keeps_up_without_freezing_the_page(
    page: Any, server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    sm, s3 = clients
    chatty = (
        "for i in range(30000):\n    print(f'line {i} ' + 'x' * 60)\nprint('the last line', flush=True)\n"
    )
    name = _create(sm, s3, chatty)
    page.goto(f"{server.url}/ui#/jobs/training/{name}")
    page.locator("#log").get_by_text("the last line").wait_for(timeout=30_000)
    text = page.locator("#log").inner_text()
    assert "line 29999" in text and "line 100 x" not in text  # the page keeps the newest lines
    page.get_by_role("link", name="Costs").click()  # the page still answers (a frozen one would not)
    page.locator("h1", has_text="Costs this month").wait_for()


def test_after_the_quickstart_the_console_shows_its_jobs_trials_endpoint_and_spend(
    browser: Any, tmp_path: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "SHIPYARD_HOME": str(tmp_path / "home"), "SHIPYARD_URL": ""}
    demo = subprocess.run(
        [sys.executable, "-m", "shipyard", "demo"], capture_output=True, text=True, env=env, timeout=600
    )
    try:
        assert demo.returncode == 0, demo.stdout + demo.stderr
        url = json.loads((tmp_path / "home" / "server.json").read_text())["url"]
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        page.goto(f"{url}/ui")
        page.locator("#running").get_by_role("link", name="titanic").wait_for()  # the endpoint
        page.locator("#spend").get_by_text("$").first.wait_for()
        _shot(page, "quickstart-home")

        page.get_by_role("link", name="Tuning").click()
        # the tuning job's own link: the home page's tables are still there while the list loads
        page.locator("tbody a[href^='#/tuning/']").first.click()
        rows = page.locator("#trials tbody tr")
        rows.nth(7).wait_for()
        assert rows.count() == 8 and page.locator("#trials tr.best").count() == 1
        best = page.locator("#trials tr.best a").inner_text()
        _shot(page, "quickstart-tuning")

        page.locator("#trials tr.best a").click()
        page.locator("[data-chart='validation:accuracy'] canvas").first.wait_for()
        page.locator("#log").get_by_text("validation-accuracy").first.wait_for()
        assert best in page.locator("h1").inner_text()
        _shot(page, "quickstart-best-trial")

        page.goto(f"{url}/ui#/endpoints/titanic")
        page.locator("#variants tbody tr").first.wait_for()
        assert page.locator("#content-type").input_value() == "text/csv"  # an XGBoost model reads CSV
        _shot(page, "quickstart-endpoint")
        context.close()
    finally:
        subprocess.run([sys.executable, "-m", "shipyard", "stop"], env=env, capture_output=True, timeout=120)


def test_a_model_package_is_approved_from_the_registry_page(
    page: Any, server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    import uuid

    sm, _ = clients
    group = f"console-models-{uuid.uuid4().hex[:6]}"
    sm.create_model_package_group(ModelPackageGroupName=group)
    spec = {"Containers": [{"Image": "i", "ModelDataUrl": "s3://models/model.tar.gz"}]}
    first = sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=spec)[
        "ModelPackageArn"
    ]
    sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=spec)
    page.goto(f"{server.url}/ui#/models?group={group}")
    rows = page.locator("#packages tbody tr")
    rows.nth(1).wait_for()
    assert rows.count() == 2
    rows.filter(has_text="PendingManualApproval").last.get_by_role("button", name="Approve").click()
    page.locator("#packages .status", has_text="Approved").wait_for()
    assert sm.describe_model_package(ModelPackageName=first)["ModelApprovalStatus"] == "Approved"
    _shot(page, "models")
