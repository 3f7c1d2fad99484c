"""``shipyard demo``: the quickstart on the embedded default.

For now it shows the foundation: a server starts on the data dir, the object store takes an
object over the S3 API and gives it back byte for byte, and the server stops cleanly. Training,
tuning and serving join the demo as they land.
"""

from __future__ import annotations

import hashlib
import os
import time

from rich.console import Console

from shipyard.config import Settings
from shipyard.errors import ShipyardError
from shipyard.server import ServerProcess

BUCKET = "shipyard-quickstart"


def run_demo(settings: Settings) -> None:
    import boto3
    from botocore.config import Config

    console = Console(highlight=False)
    console.print(f"[bold]Shipyard quickstart[/] — data dir {settings.data_dir}")
    started = time.monotonic()
    server = ServerProcess(settings.data_dir, log_path=settings.data_dir / "demo-server.log")
    server.start()
    console.print(f"  server ready at {server.url} in {time.monotonic() - started:.2f} s")
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=server.url,
            region_name=settings.region,
            aws_access_key_id="shipyard",
            aws_secret_access_key="shipyard",
            config=Config(retries={"mode": "standard"}),
        )
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if BUCKET not in existing:
            s3.create_bucket(Bucket=BUCKET)
        payload = os.urandom(1024 * 1024)
        key = "quickstart/hello.bin"
        s3.put_object(Bucket=BUCKET, Key=key, Body=payload)
        back = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if back != payload:
            raise ShipyardError("The object read back differs from the one stored")
        console.print(
            f"  stored and read back s3://{BUCKET}/{key} (1 MiB, sha256 {hashlib.sha256(back).hexdigest()[:12]}…)"
        )
        listed = [
            o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="quickstart/").get("Contents", [])
        ]
        console.print(f"  s3://{BUCKET}/quickstart/ holds {len(listed)} object(s)")
        s3.delete_object(Bucket=BUCKET, Key=key)
    finally:
        code = server.stop()
    if code != 0:
        raise ShipyardError(f"The server exited with code {code}:\n{server.log_tail()}")
    console.print(f"  server stopped cleanly; total {time.monotonic() - started:.2f} s")
    console.print(
        "[green]Quickstart complete.[/] Next: `shipyard server` and point boto3 or the "
        "sagemaker SDK at http://127.0.0.1:8300"
    )
