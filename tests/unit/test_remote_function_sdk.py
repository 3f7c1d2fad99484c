"""A remote function's environment gets the sagemaker SDK of its client's major version."""

from __future__ import annotations

import importlib.metadata

import pytest

from shipyard.envs import ImageResolver
from shipyard.envs._images import SDK_V3_DEFAULT, client_sdk_version, remote_sdk_requirement

IMAGE = "236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-311:1.0"
SERVER_V2 = importlib.metadata.version("sagemaker")  # the server's own SDK (the v2 compat tier's)


def _arguments(version: str) -> list[str]:
    # What both SDK majors put in ContainerArguments for the job's bootstrap.
    return ["--s3_base_uri", "s3://b/p", "--region", "us-east-1", "--client_python_version", "3.11",
            "--client_sagemaker_pysdk_version", version, "--dependency_settings", "{}"]  # fmt: skip


def test_the_client_version_is_read_from_the_container_arguments() -> None:
    assert client_sdk_version(_arguments("3.27.0")) == "3.27.0"
    assert client_sdk_version(["--s3_base_uri", "s3://b/p"]) is None
    assert client_sdk_version([]) is None


@pytest.mark.parametrize(
    ("client", "wanted"),
    [
        ("3.27.0", "sagemaker==3.27.0"),
        ("3.5.1", "sagemaker==3.5.1"),  # the client's own release
        ("3.0.0.dev0", f"sagemaker=={SDK_V3_DEFAULT}"),  # v3's fallback when it cannot read its own
        ("3.28.0rc1", f"sagemaker=={SDK_V3_DEFAULT}"),
        ("3.x", f"sagemaker=={SDK_V3_DEFAULT}"),
        ("2.250.0", f"sagemaker=={SERVER_V2}"),  # v2: the server's v2, which it has installed
        (None, f"sagemaker=={SERVER_V2}"),
    ],
)
def test_the_sdk_follows_the_clients_major_version(client: str | None, wanted: str) -> None:
    assert remote_sdk_requirement(client) == wanted


def test_a_v3_clients_remote_function_image_resolves_to_v3() -> None:
    resolver = ImageResolver()
    v3 = resolver.resolve(IMAGE, arguments=_arguments("3.27.0"))
    # the SDK first, then what every job environment carries (setuptools with pkg_resources)
    assert v3.requirements == ("sagemaker==3.27.0", "setuptools<81", "boto3", "requests")
    assert v3.note is not None and "the client runs sagemaker 3.27.0" in v3.note
    v2 = resolver.resolve(IMAGE, arguments=_arguments(SERVER_V2))
    assert v2.requirements[0] == f"sagemaker=={SERVER_V2}" and "setuptools<81" in v2.requirements
    assert resolver.resolve(IMAGE).requirements == v2.requirements
