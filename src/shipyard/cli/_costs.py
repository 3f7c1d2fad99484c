"""``shipyard cost``: what the work cost, from the ledger, grouped as asked."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shipyard.cli._jobs import AsJson, Url, print_json


def cost(
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            "-b",
            help="Group by kind, instance_type, resource, parent, user, day, month or tag:<key> (repeat)",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="From this ISO date or time, UTC [default: the first of this month]")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Up to this ISO date or time, UTC [default: now]")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV, for a spreadsheet")] = False,
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """What the work cost: this site's prices, and SageMaker's on-demand prices beside them."""
    import httpx

    from shipyard.sdk import connect

    connection = connect(url)
    params: list[tuple[str, str | int | float | bool | None]] = [("group_by", g) for g in (by or ["kind"])]
    params += [(k, v) for k, v in (("start", since), ("end", until)) if v]
    if as_csv:
        params.append(("format", "csv"))
    answer = httpx.get(
        f"{connection.url}/api/v1/costs",
        params=params,
        headers={"Authorization": f"Bearer {connection.secret_access_key}"},
        timeout=60,
    )
    answer.raise_for_status()
    if as_csv:
        typer.echo(answer.text, nl=False)
        return
    report = answer.json()
    if as_json:
        print_json(report)
        return
    groups = report["group_by"]
    table = Table(
        *groups,
        "hours",
        "cost (USD)",
        "on SageMaker (USD)",
        title=f"Spend from {report['start'][:19]} to {report['end'][:19]} UTC",
        show_footer=True,
    )
    for column, footer in zip(
        table.columns,
        [
            "total",
            *[""] * (len(groups) - 1),
            f"{report['total']['unit_seconds'] / 3600:.3f}",
            report["total"]["cost_usd"],
            report["total"]["sagemaker_cost_usd"],
        ],
        strict=True,
    ):
        column.footer = footer
    for column in table.columns[len(groups) :]:
        column.justify = "right"
    for row in report["rows"]:
        table.add_row(
            *("(untagged)" if row[g] is None and g.startswith("tag:") else str(row[g] or "") for g in groups),
            f"{row['unit_seconds'] / 3600:.3f}",
            row["cost_usd"],
            row["sagemaker_cost_usd"],
        )
    Console().print(table if report["rows"] else "Nothing was spent in that time.")
