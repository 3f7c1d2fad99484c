"""The sagemaker SDK's ``@remote`` with a conda environment.yml, unchanged: what pip can install of
it (its pip section, conda packages with a PyPI equivalent, the Python checked) is there when the
function runs; what only conda has fails the job naming each package. Without one, the function's
environment still has what AWS's images have besides the SDK: setuptools with pkg_resources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
IMAGE = "public.ecr.aws/sagemaker/sagemaker-distribution:2.1-cpu"


@pytest.fixture
def session(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    import sagemaker

    import shipyard.connector  # noqa: F401 - the SDK's waits, cut short

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    boto_session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    session = sagemaker.Session(
        boto_session=boto_session,
        sagemaker_client=boto_client("sagemaker", server.url),
        default_bucket="sdk-remote-conda",
    )
    session.default_bucket()
    yield session


def test_a_remote_function_gets_what_pip_installs_of_its_environment_yml(
    session: Any, tmp_path: Path
) -> None:
    from sagemaker.remote_function import remote

    environment = tmp_path / "environment.yml"
    environment.write_text(
        "name: report\nchannels: [conda-forge]\n"
        "dependencies:\n  - python=3.11\n  - pip\n  - six=1.16\n  - pip:\n    - tabulate==0.9.0\n"
    )

    @remote(
        instance_type="ml.m5.large",
        image_uri=IMAGE,
        role=ROLE,
        dependencies=str(environment),
        sagemaker_session=session,
    )
    def versions() -> dict[str, str]:
        from importlib.metadata import version

        import tabulate

        return {"six": version("six"), "tabulate": tabulate.__version__}

    assert versions() == {"six": "1.16.0", "tabulate": "0.9.0"}


def test_packages_only_conda_has_fail_the_job_naming_each(session: Any, tmp_path: Path) -> None:
    from sagemaker.remote_function import remote

    environment = tmp_path / "environment.yml"
    environment.write_text("dependencies:\n  - numpy=1.26\n  - cudatoolkit=11.8\n  - r-base=4.3\n")

    @remote(
        instance_type="ml.m5.large",
        image_uri=IMAGE,
        role=ROLE,
        dependencies=str(environment),
        sagemaker_session=session,
    )
    def nothing() -> None:
        return None

    with pytest.raises(Exception, match="Failed to execute remote function"):
        nothing()
    sm = session.sagemaker_client
    [job] = sm.list_training_jobs(NameContains="nothing", SortBy="CreationTime")["TrainingJobSummaries"][:1]
    reason = sm.describe_training_job(TrainingJobName=job["TrainingJobName"])["FailureReason"]
    assert reason.startswith("ClientError: environment.yml asks for 2 package(s)"), reason
    assert "cudatoolkit=11.8 (a conda-only package" in reason and "r-base=4.3 (" in reason, reason
    assert "numpy" not in reason  # numpy has a PyPI equivalent


def test_a_remote_function_imports_pkg_resources_as_in_aws_images(session: Any) -> None:
    from sagemaker.remote_function import remote

    @remote(instance_type="ml.m5.large", image_uri=IMAGE, role=ROLE, sagemaker_session=session)
    def setuptools_here() -> str:
        import warnings

        with warnings.catch_warnings():  # setuptools 80 says pkg_resources is deprecated
            warnings.simplefilter("ignore")
            import pkg_resources

        return pkg_resources.get_distribution("setuptools").version

    version = setuptools_here()
    assert int(version.split(".")[0]) < 81  # the release that still has pkg_resources
