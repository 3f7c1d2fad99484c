"""``shipyard cost``: what the work cost, from the ledger, grouped as asked."""

from __future__ import annotations

from typing import Annotated, Any

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
    """What the work cost: this site's prices, and SageMaker's on-demand prices beside them. By
    user: who created the work ("(lab)": the server's own key's). A user who is not an
    administrator sees their own spend only."""
    from shipyard.sdk import connect

    connection = connect(url)
    params: list[tuple[str, str | int | float | bool | None]] = [("group_by", g) for g in (by or ["kind"])]
    params += [(k, v) for k, v in (("start", since), ("end", until)) if v]
    if as_csv:
        params.append(("format", "csv"))
    answer = connection.request("GET", "costs", params=params)
    answer.raise_for_status()
    if as_csv:
        typer.echo(answer.text, nl=False)
        return
    report = answer.json()
    if as_json:
        print_json(report)
        return
    groups = report["group_by"]
    gpus = any(r.get("gpu_seconds") for r in report["rows"])  # the GPU-hours column, where any
    table = Table(
        *groups,
        "hours",
        *(["GPU-hours"] if gpus else []),
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
            *([f"{report['total']['gpu_seconds'] / 3600:.3f}"] if gpus else []),
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
            *(_cell(g, row[g]) for g in groups),
            f"{row['unit_seconds'] / 3600:.3f}",
            *([f"{row['gpu_seconds'] / 3600:.3f}"] if gpus else []),
            row["cost_usd"],
            row["sagemaker_cost_usd"],
        )
    Console().print(table if report["rows"] else "Nothing was spent in that time.")


def _cell(group: str, value: object) -> str:
    if value is None and group.startswith("tag:"):
        return "(untagged)"
    if value is None and group == "user":
        return "(lab)"  # root's: the server's own key pair
    return str(value or "")


def _m(usd: str) -> str:
    from decimal import Decimal

    from shipyard.core.costs import money

    return money(Decimal(usd))


budgets_app = typer.Typer(
    help="Budgets: limits on what work may cost, with alerts and actions.", no_args_is_help=True
)


def _native(url: str | None, method: str, path: str, **kwargs: Any) -> object:
    from shipyard.sdk import connect

    answer = connect(url).request(method, path, **kwargs)
    answer.raise_for_status()
    return answer.json() if answer.content else None


@budgets_app.command("list")
def list_budgets(url: Url = None, as_json: AsJson = False) -> None:
    """Every budget you may see (a user: their own): its limit, spend this period, committed by
    running work, actions."""
    found = _native(url, "GET", "budgets")
    assert isinstance(found, list)
    if as_json:
        print_json(found)
        return
    table = Table("name", "period", "whose", "scope", "limit", "spent", "committed", "%", "actions")
    for b in found:
        whose = (
            f"user {b['user']}" if b.get("user") else f"group {b['group']}" if b.get("group") else "everyone"
        )
        scope = ", ".join(f"{k}={v}" for k, v in b["scope"].items()) or "everything"
        table.add_row(
            b["name"],
            b["period"],
            whose,
            scope,
            _m(b["limit_usd"]),
            _m(b["spend_usd"]),
            _m(b["committed_usd"]),
            f"{b['percent']:g}",
            ", ".join(b["actions"]) or "alert",
        )
    Console().print(table if found else "No budgets.")


@budgets_app.command("create")
def create_budget(
    name: str,
    limit: Annotated[float, typer.Option("--limit", help="USD")],
    period: Annotated[str, typer.Option(help="monthly (calendar month, UTC) or total")] = "monthly",
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Only resources with this tag, key=value (repeat)")
    ] = None,
    threshold: Annotated[
        list[int] | None,
        typer.Option("--threshold", help="Alert at this % of the limit (repeat) [default: 80, 100]"),
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option("--action", help="deny (refuse launches past the limit), stop (stop work at it)"),
    ] = None,
    notify: Annotated[str | None, typer.Option(help="A webhook on this machine for the alerts")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's work")] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Only the work of this group's members, summed")
    ] = None,
    url: Url = None,
) -> None:
    """Create a budget (a user who is not an administrator: one of their own)."""
    from shipyard.cli._launch import _pairs

    body: dict[str, object] = {
        "name": name,
        "limit_usd": limit,
        "period": period,
        "scope": _pairs(tag, "--tag"),
        "actions": action or [],
    }
    if threshold:
        body["thresholds"] = threshold
    if notify:
        body["notify"] = notify
    if user:
        body["user"] = user
    if group:
        body["group"] = group
    created = _native(url, "POST", "budgets", json=body)
    assert isinstance(created, dict)
    typer.echo(f"Budget {name}: {_m(created['spend_usd'])} of {_m(created['limit_usd'])} spent this period")


@budgets_app.command("delete")
def delete_budget(name: str, url: Url = None) -> None:
    """Delete a budget (its alerts stay in the history)."""
    _native(url, "DELETE", f"budgets/{name}")
    typer.echo(f"Deleted budget {name}")


def alerts(
    budget: Annotated[str | None, typer.Option(help="Only this budget's")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 20,
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """Budget alerts: thresholds crossed, launches denied, work stopped."""
    params: dict[str, object] = {"limit": limit}
    if budget:
        params["budget"] = budget
    found = _native(url, "GET", "alerts", params=params)
    assert isinstance(found, list)
    if as_json:
        print_json(found)
        return
    table = Table("when (UTC)", "budget", "kind", "spent", "what")
    for event in found:
        table.add_row(
            event["created"][:19], event["budget"], event["kind"], _m(event["spend_usd"]), event["message"]
        )
    Console().print(table if found else "No alerts.")


def waste(
    since: Annotated[
        str | None, typer.Option(help="Jobs ended since this ISO date [default: 30 days ago]")
    ] = None,
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """Money spent on nothing: idle endpoints, and jobs on bigger instances than they used."""
    found = _native(url, "GET", "waste", params={"since": since} if since else {})
    assert isinstance(found, dict)
    if as_json:
        print_json(found)
        return
    console = Console(highlight=False)
    if found["idle_endpoints"]:
        table = Table("endpoint", "idle (min)", "instances", "per hour", "per day", title="Idle endpoints")
        for e in found["idle_endpoints"]:
            table.add_row(
                e["endpoint"],
                f"{e['idle_minutes']:g}",
                ", ".join(e["instance_types"]),
                _m(e["cost_per_hour_usd"]),
                _m(e["cost_per_day_usd"]),
            )
        console.print(table)
    else:
        console.print("No idle endpoints.")
    if found["right_sizing"]:
        gpus = any(s.get("peak_gpu_percent") is not None for s in found["right_sizing"])
        columns = ["job", "ran on", "peak CPU", "peak memory", *(["peak GPU"] if gpus else []), "suggested"]
        table = Table(*columns, "saving", title="Right-sizing")
        for s in found["right_sizing"]:
            gpu = s.get("peak_gpu_percent")
            table.add_row(
                s["job"],
                f"{s['instance_count']} x {s['instance_type']}",
                f"{s['peak_cpu_percent']:g}%",
                f"{s['peak_memory_gib']:g} GiB",
                *([f"{gpu:g}% (idle)" if gpu is not None else "-"] if gpus else []),
                s["suggested_instance_type"],
                f"{_m(s['saving_usd'])} ({s['saving_percent']:g}%)",
            )
        console.print(table)
    else:
        console.print("No right-sizing suggestions.")
