"""``shipyard endpoints ...`` and ``shipyard instance-types``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from shipyard.cli._jobs import AsJson, Url, print_json
from shipyard.errors import ValidationError

endpoints_app = typer.Typer(help="Endpoints: list, invoke, delete.", no_args_is_help=True)


@endpoints_app.command("list")
def list_endpoints(url: Url = None, as_json: AsJson = False) -> None:
    """Every endpoint: status, instances and what it has cost so far."""
    from shipyard.sdk import connect

    connection = connect(url)
    sm = connection.client("sagemaker")
    rows: list[dict[str, Any]] = []
    for page in sm.get_paginator("list_endpoints").paginate(SortBy="CreationTime", SortOrder="Descending"):
        for summary in page["Endpoints"]:
            found = connection.native(f"endpoints/{summary['EndpointName']}")
            rows.append(
                {
                    "name": summary["EndpointName"],
                    "status": summary["EndpointStatus"],
                    "created": summary["CreationTime"],
                    "variants": [
                        {
                            "name": v["name"],
                            "model": v["model"],
                            "instance_type": v["instance_type"],
                            "instances": len(v["instances"]),
                            "weight": v["weight"],
                        }
                        for v in found["variants"]
                    ],
                    "cost_usd": float(found["cost_usd"]),
                }
            )
    if as_json:
        print_json(rows)
        return
    table = Table("name", "status", "created", "instances", "cost so far")
    for row in rows:
        instances = ", ".join(f"{v['instances']} x {v['instance_type']}" for v in row["variants"])
        table.add_row(
            row["name"],
            row["status"],
            f"{row['created']:%Y-%m-%d %H:%M}",
            instances,
            f"${row['cost_usd']:.6f}",
        )
    Console().print(table if rows else "No endpoints.")


@endpoints_app.command("invoke")
def invoke(
    name: str,
    data: Annotated[str | None, typer.Option("--data", "-d", help="The request body ('-': stdin)")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the request body from a file")
    ] = None,
    content_type: Annotated[str, typer.Option(help="The body's type")] = "application/json",
    accept: Annotated[str | None, typer.Option(help="The answer's type")] = None,
    url: Url = None,
) -> None:
    """Send one request to an endpoint and print the model's answer as it came."""
    from shipyard.sdk import connect

    if (data is None) == (file is None):
        raise ValidationError("Give the request body with exactly one of --data or --file", field="data")
    if file is not None:
        body = file.read_bytes()
    elif data == "-":
        body = sys.stdin.buffer.read()
    else:
        body = str(data).encode()
    kwargs: dict[str, Any] = {"EndpointName": name, "Body": body, "ContentType": content_type}
    if accept:
        kwargs["Accept"] = accept
    answer = connect(url).client("sagemaker-runtime").invoke_endpoint(**kwargs)
    sys.stdout.buffer.write(answer["Body"].read())
    sys.stdout.write("\n")


@endpoints_app.command("delete")
def delete(
    name: str,
    keep_model: Annotated[
        bool, typer.Option(help="Keep the configuration and model named after it, too")
    ] = False,
    url: Url = None,
) -> None:
    """Delete an endpoint (its instances stop; so does its cost), and the configuration and
    model named after it (as `deploy` from the SDK makes them)."""
    from shipyard.sdk import Endpoint, connect

    connection = connect(url)
    if keep_model:
        connection.client("sagemaker").delete_endpoint(EndpointName=name)
    else:
        Endpoint(name, connection).delete()
    typer.echo(f"Deleted endpoint {name}")


def instance_types(
    kind: Annotated[
        str, typer.Option(help="The prices shown: training, processing, transform or hosting")
    ] = "training",
    gpu: Annotated[bool, typer.Option(help="Only types with GPUs")] = False,
    here: Annotated[
        bool, typer.Option(help="Only types this server runs as they are (no scaling down)")
    ] = False,
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """The instance catalog: what each ml.* type gives a job, its price per hour, and whether this
    server runs it as it is, scaled down to fit, or not at all."""
    from shipyard.sdk import connect
    from shipyard.sdk import instance_types as catalog

    kinds = ("training", "processing", "transform", "hosting")
    if kind not in kinds:
        raise ValidationError(f"--kind {kind!r} is not one of {', '.join(kinds)}", field="kind", value=kind)
    connection = connect(url)
    types = [t for t in catalog(kind, connection) if t["gpu_count"] or not gpu]
    types = [t for t in types if t.get("runs_here") == "as_is" or not here]
    if as_json:
        print_json(types)
        return
    machine = connection.native("info").get("gpus") or []
    # Whole on an 80-column terminal but for the GPU cells, which wrap.
    table = Table(
        Column("name", no_wrap=True),
        "vCPU",
        "memory",
        "GPU",
        Column(f"{kind} $/hour", no_wrap=True),
        Column("here", no_wrap=True),
    )
    for t in types:
        gpus = f"{t['gpu_count']} x {t['gpu_model']}" if t["gpu_count"] else ""
        if t["gpu_count"] and t.get("gpu_memory_gib"):
            gpus += f" {t['gpu_memory_gib']:g} GiB"
        price = t[f"{kind}_usd_per_hour"]
        table.add_row(
            t["name"],
            str(t["vcpu"]),
            f"{t['memory_gib']:g} GiB",
            gpus,
            f"{price:.4f}" if price is not None else "",
            _HERE.get(t.get("runs_here") or "", ""),
        )
    console = Console()
    console.print(table)
    if machine:
        console.print(
            "This machine's GPUs: "
            + ", ".join(f"{g['index']}: {g['name']} {g['memory_gib']:g} GiB" for g in machine)
        )
    else:
        console.print("This machine has no GPU Shipyard can use.")


_HERE = {"as_is": "yes", "scaled": "scaled down", "no": "no"}
