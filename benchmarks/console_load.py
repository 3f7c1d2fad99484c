"""The console with many jobs in the store: page loads in headless Chromium with 2,000 training
jobs against the same pages with 25, both in this process.

    .venv/bin/python benchmarks/console_load.py [--jobs 2000] [--runs 5]

Jobs are written straight into the store of a data dir (finished, as a long-used server keeps
them), then a server is started on it. Measured, medians over ``--runs``:

* API: GET /api/v1/jobs/training (the list page's call: one page of 25 and the total).
* list page: /ui#/jobs/training from navigation until its 25 rows are shown.
* home page: /ui from navigation until the spend card is shown.
* detail page: one job's page until its status timeline is shown.

The ratio is the 2,000-job figure over the 25-job one: flat when lists page in the database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from shipyard.core.jobs import Job, JobState
from shipyard.core.training import SecondaryStatus, TrainingJobSpec, TrainingJobStatus
from shipyard.server import ServerProcess
from shipyard.store import Database, TrainingJobRepository

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def fill(data_dir: Path, count: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{data_dir}/shipyard.db")  # the server's default store
    db.upgrade()
    repository = TrainingJobRepository(db)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    for i in range(count):
        name = f"job-{i:05d}"
        request = {
            "TrainingJobName": name,
            "RoleArn": "arn:aws:iam::000000000000:role/R",
            "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            "HyperParameters": {"sagemaker_program": '"train.py"', "epochs": str(i % 7)},
            "OutputDataConfig": {"S3OutputPath": "s3://b/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        }
        created = start + dt.timedelta(minutes=i)
        state = JobState.new(created).finish(
            TrainingJobStatus.COMPLETED if i % 9 else TrainingJobStatus.FAILED,
            SecondaryStatus.COMPLETED if i % 9 else SecondaryStatus.FAILED,
            created + dt.timedelta(seconds=30),
        )
        arn = f"arn:aws:sagemaker:us-east-1:000000000000:training-job/{name}"
        repository.create(
            Job(TrainingJobSpec.from_request(request), arn, created, state, {"cost_usd": "0.001"})
        )
    db.dispose()


def measure(url: str, page: object, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"api": [], "list": [], "home": [], "detail": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        httpx.get(f"{url}/api/v1/jobs/training?limit=25").raise_for_status()
        times["api"].append(time.perf_counter() - t0)
        for key, target, ready in (
            ("list", "#/jobs/training", "#jobs tbody tr:nth-child(25)"),
            ("home", "", "#spend"),
            ("detail", "#/jobs/training/job-00003", ".timeline li"),
        ):
            page.goto("about:blank")  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            page.goto(f"{url}/ui{target}")  # type: ignore[attr-defined]
            page.locator(ready).first.wait_for()  # type: ignore[attr-defined]
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        for count in (25, args.jobs):
            data_dir = Path(tmp) / f"data-{count}"
            fill(data_dir, count)
            with ServerProcess(data_dir) as server:
                measure(server.url, page, 1)  # warm up
                results[count] = measure(server.url, page, args.runs)
        browser.close()
    small, big = results[25], results[args.jobs]
    print(f"console with {args.jobs} training jobs against 25, medians of {args.runs}:")
    for key, label in (
        ("api", "list API call"),
        ("list", "list page"),
        ("home", "home page"),
        ("detail", "job page"),
    ):
        print(
            f"  {label:<14} {big[key] * 1000:7.1f} ms  (25 jobs: {small[key] * 1000:6.1f} ms, ratio {big[key] / small[key]:.2f})"
        )


if __name__ == "__main__":
    main()
