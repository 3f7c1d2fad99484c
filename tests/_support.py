"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def boto_client(service: str, url: str, **kwargs: Any) -> Any:
    """A real boto3 client for ``service`` at ``url``, with dummy credentials and a real region."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name=kwargs.pop("region_name", "us-east-1"),
        aws_access_key_id=kwargs.pop("aws_access_key_id", "test-key"),
        aws_secret_access_key=kwargs.pop("aws_secret_access_key", "test-secret"),
        config=kwargs.pop("config", Config(retries={"mode": "standard", "max_attempts": 2})),
        **kwargs,
    )


def tgz(files: dict[str, str]) -> bytes:
    """A gzipped tar of ``files`` (name → text): a sourcedir.tar.gz or a model.tar.gz."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Wait until ``condition()`` is true, checking every 50 ms; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not there after {timeout} s")
        time.sleep(0.05)
