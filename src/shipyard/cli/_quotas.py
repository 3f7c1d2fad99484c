"""``shipyard quotas``: quotas by user and group (concurrent vCPUs, GPUs, instances and endpoint
instances), through the running server's native API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shipyard.cli._jobs import AsJson, Url, print_json

quotas_app = typer.Typer(
    help="Quotas by user and group: what each may run at once (the config file's [quotas], changed here).",
    no_args_is_help=True,
)
LIMITS = ("vcpus", "gpus", "instances", "endpoints")
Subject = Annotated[
    str,
    typer.Argument(
        help="A user (NAME or user:NAME), a group (group:NAME), or default (every user without their own)"
    ),
]


def _native(url: str | None, method: str, path: str, **kwargs: Any) -> Any:
    from shipyard.sdk import connect

    answer = connect(url).request(method, path, **kwargs)
    answer.raise_for_status()
    return answer.json() if answer.content else None


def parse_limits(pairs: list[str]) -> dict[str, int | None]:
    """``vcpus=4 gpus=none`` as the API takes it (``none``: no limit).

    Raises:
        typer.BadParameter: naming the pair that is wrong.
    """
    limits: dict[str, int | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lower()
        if not sep or key not in LIMITS:
            raise typer.BadParameter(
                f"{pair!r} is not LIMIT=VALUE with LIMIT one of {', '.join(LIMITS)}", param_hint="LIMITS"
            )
        if value.strip().lower() in ("none", "unlimited", ""):
            limits[key] = None
            continue
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0:
            raise typer.BadParameter(
                f"{key} must be a whole number of 0 or more, or none, got {value!r}", param_hint="LIMITS"
            )
        limits[key] = number
    if not limits:
        raise typer.BadParameter(
            f"give at least one of {', '.join(f'{k}=N' for k in LIMITS)}", param_hint="LIMITS"
        )
    return limits


@quotas_app.command("show")
def show(url: Url = None, as_json: AsJson = False) -> None:
    """Every quota: its limits, what its holder has in use now, and where it was set."""
    found = _native(url, "GET", "quotas")["quotas"]
    if as_json:
        print_json(found)
        return
    if not found:
        Console().print("No quotas: every user may use the whole machine (the site's max_* limits apply).")
        return
    table = Table("for", *LIMITS, "set in")
    for entry in found:
        cells = []
        for name in LIMITS:
            limit, used = entry["limits"][name], entry["in_use"][name]
            shown = "-" if limit is None else f"{limit:g}"
            cells.append(f"{used:g} of {shown}" if used and entry["subject"] != "default" else shown)
        table.add_row(
            entry["subject"], *cells, "config file" if entry["source"] == "config" else "shipyard quotas set"
        )
    Console().print(table)


@quotas_app.command("set")
def set_quota(
    subject: Subject,
    limits: Annotated[
        list[str], typer.Argument(help="LIMIT=VALUE ... (vcpus, gpus, instances, endpoints; none: no limit)")
    ],
    url: Url = None,
) -> None:
    """Change a quota at run time (kept across restarts): e.g. shipyard quotas set alice vcpus=4 gpus=0."""
    answer = _native(url, "PUT", f"quotas/{subject}", json=parse_limits(limits))
    shown = ", ".join(f"{k} {v}" for k, v in answer["limits"].items()) or "no limits"
    typer.echo(f"Quota of {answer['subject']}: {shown}")


@quotas_app.command("reset")
def reset(subject: Subject, url: Url = None) -> None:
    """Forget what was set at run time: the config file's quota (if any) applies again."""
    _native(url, "DELETE", f"quotas/{subject}")
    typer.echo(f"Quota of {subject}: as the config file sets it")
