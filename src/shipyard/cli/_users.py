"""``shipyard users``, ``shipyard keys`` and ``shipyard whoami``: the lab's users and their access
keys (through the running server's IAM API, or the data dir's store when no server runs on it:
:mod:`shipyard.cli._directory` says the rule), and who the CLI acts as."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shipyard.cli._directory import Directory, KeyEntry, UserEntry, directory
from shipyard.cli._jobs import AsJson, Url, print_json

users_app = typer.Typer(
    help="The lab's users: add, list, disable, enable, delete (the IAM API's users).", no_args_is_help=True
)
keys_app = typer.Typer(help="Users' access keys: create (shown once), list, revoke.", no_args_is_help=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The server's data dir: its server.json says where it runs, and with none running its "
        "store is changed directly [env: SHIPYARD_HOME; default: ~/.shipyard]",
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]


def _say_who(found: Directory) -> None:
    typer.secho(found.acting_as(), err=True, dim=True)


@users_app.command("add")
def add_user(
    name: str,
    admin: Annotated[
        bool, typer.Option("--admin", help="An administrator: may do everything, sees everyone's work")
    ] = False,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Add to this group, made when missing (repeat)")
    ] = None,
    url: Url = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Add a user (an administrator with --admin, who gets an access key at once: on a data dir
    with no users and no server yet, this makes the first administrator, its key kept in
    <data dir>/admin-credentials, 0600)."""
    with directory(url, data_dir) as found:
        _say_who(found)
        found.add_user(name, administrator=admin)
        joined = [(g, found.join(name, g)) for g in group or ()]
        key = found.create_key(name) if admin else None
        stored = found.keep_administrator_key(key) if key else None
        user = found.user(name)
        server = found.url
    if as_json:
        print_json({"user": _user_json(user), "access_key": _key_json(key) if key else None})
        return
    typer.echo(f"Added the {'administrator' if admin else 'user'} {user.name} ({user.arn}).")
    for g, created in joined:
        typer.echo(f"Added {user.name} to the group {g}{' (made it)' if created else ''}.")
    if key is not None:
        _show_new_key(key, server, stored)
    else:
        typer.echo(f"Give them a key: shipyard keys create {user.name}")


@users_app.command("list")
def list_users(url: Url = None, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Every user: administrator or not, enabled or not, groups, keys."""
    with directory(url, data_dir) as found:
        _say_who(found)
        users = found.users()
    if as_json:
        print_json([_user_json(u) for u in users])
        return
    table = Table("user", "role", "status", "groups", "keys", "created")
    for u in users:
        active = sum(k.status == "Active" for k in u.keys)
        table.add_row(
            u.name,
            "administrator" if u.administrator else "user",
            "enabled" if u.enabled else "disabled",
            ", ".join(u.groups),
            f"{active} active" + (f", {len(u.keys) - active} inactive" if len(u.keys) > active else ""),
            f"{u.created:%Y-%m-%d}" if u.created else "",
        )
    Console().print(table if users else "No users yet: shipyard users add NAME")


@users_app.command("disable")
def disable_user(name: str, url: Url = None, data_dir: DataDir = None) -> None:
    """Refuse every request signed with the user's keys (its work and keys are kept)."""
    with directory(url, data_dir) as found:
        _say_who(found)
        found.set_enabled(name, False)
    typer.echo(f"Disabled {name}: requests signed with its keys are refused (shipyard users enable {name}).")


@users_app.command("enable")
def enable_user(name: str, url: Url = None, data_dir: DataDir = None) -> None:
    """Accept the user's active keys again."""
    with directory(url, data_dir) as found:
        _say_who(found)
        found.set_enabled(name, True)
    typer.echo(f"Enabled {name}.")


@users_app.command("delete")
def delete_user(name: str, yes: Yes = False, url: Url = None, data_dir: DataDir = None) -> None:
    """Delete a user with its access keys, inline policies and group memberships (what it made
    stays, reached by administrators)."""
    with directory(url, data_dir) as found:
        _say_who(found)
        held = found.holdings(name)
        what = [
            _count(len(held.keys), "access key"),
            _count(len(held.policies), "inline policy", "inline policies"),
            _count(len(held.groups), "group membership"),
        ]
        if not yes:
            typer.confirm(f"Delete the user {name} with {', '.join(what)}?", abort=True)
        found.delete_user(name)
    typer.echo(f"Deleted the user {name} ({', '.join(what)}).")


@keys_app.command("create")
def create_key(user: str, url: Url = None, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """A new access key for the user (at most two each); its secret is shown this once."""
    with directory(url, data_dir) as found:
        _say_who(found)
        key = found.create_key(user)
        server = found.url
    if as_json:
        print_json(_key_json(key))
        return
    _show_new_key(key, server, None)


@keys_app.command("list")
def list_keys(
    user: Annotated[str | None, typer.Argument(help="Whose keys [default: every user's]")] = None,
    url: Url = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Access keys (ids and status; secrets are never shown again)."""
    with directory(url, data_dir) as found:
        _say_who(found)
        keys = found.keys(user)
    if as_json:
        print_json([_key_json(k) for k in keys])
        return
    table = Table("access key id", "user", "status", "created")
    for k in keys:
        table.add_row(
            k.access_key_id, k.user or "", k.status, f"{k.created:%Y-%m-%d %H:%M}" if k.created else ""
        )
    Console().print(table if keys else "No access keys.")


@keys_app.command("revoke")
def revoke_key(
    key_id: str,
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete the key instead of making it Inactive")
    ] = False,
    url: Url = None,
    data_dir: DataDir = None,
) -> None:
    """Make a key Inactive (requests signed with it are refused; `shipyard keys revoke --delete`
    removes it for good)."""
    with directory(url, data_dir) as found:
        _say_who(found)
        key = found.delete_key(key_id) if delete else found.set_key_status(key_id, "Inactive")
    owner = f" ({key.user})" if key.user else ""
    if delete:
        typer.echo(f"Deleted the access key {key_id}{owner}.")
    else:
        typer.echo(
            f"Made the access key {key_id}{owner} Inactive: requests signed with it are refused "
            "(--delete removes it)."
        )


def whoami(url: Url = None, as_json: AsJson = False) -> None:
    """Who the CLI and SDK act as on the server, and where their key came from."""
    from shipyard.sdk import connect

    connection = connect(url)
    found = connection.client("sts").get_caller_identity()
    found.pop("ResponseMetadata", None)
    credentials = connection.credentials
    if as_json:
        print_json(
            {
                **found,
                "Server": connection.url,
                "AccessKeyId": credentials.access_key_id,
                "KeySource": credentials.source,
            }
        )
        return
    typer.echo(found["Arn"])
    typer.echo(f"  account {found['Account']}, user id {found['UserId']}")
    typer.echo(f"  server  {connection.url}")
    typer.echo(f"  key     {credentials.access_key_id} from {credentials.source}")


def _show_new_key(key: KeyEntry, url: str, stored: Path | None) -> None:
    assert key.secret is not None
    typer.echo(f"Access key {key.access_key_id} for {key.user}; its secret is shown this once:")
    typer.echo(f"  {key.secret}")
    if stored is not None:
        typer.echo(f"Kept in {stored} (readable by this user only): the CLI there uses it.")
    quoted = {
        name: shlex.quote(value)
        for name, value in (("url", url), ("id", key.access_key_id), ("secret", key.secret))
    }
    typer.echo(
        "\nTo use it from a shell (boto3, the sagemaker SDK and Shipyard's CLI and SDK read these):\n"
        f"  export SHIPYARD_URL={quoted['url']} AWS_ENDPOINT_URL={quoted['url']} AWS_DEFAULT_REGION=us-east-1\n"
        f"  export AWS_ACCESS_KEY_ID={quoted['id']} AWS_SECRET_ACCESS_KEY={quoted['secret']}\n"
        "or as an AWS profile (then AWS_PROFILE=shipyard), in ~/.aws/credentials:\n"
        f"  [shipyard]\n  aws_access_key_id = {key.access_key_id}\n  aws_secret_access_key = {key.secret}\n"
        f"and in ~/.aws/config:\n  [profile shipyard]\n  endpoint_url = {url}\n  region = us-east-1"
    )


def _user_json(user: UserEntry) -> dict[str, object]:
    return {
        "name": user.name,
        "arn": user.arn,
        "administrator": user.administrator,
        "enabled": user.enabled,
        "groups": list(user.groups),
        "access_keys": [_key_json(k) for k in user.keys],
        "created": user.created.isoformat() if user.created else None,
    }


def _key_json(key: KeyEntry) -> dict[str, object]:
    found: dict[str, object] = {
        "AccessKeyId": key.access_key_id,
        "UserName": key.user,
        "Status": key.status,
        "CreateDate": key.created.isoformat() if key.created else None,
    }
    if key.secret is not None:
        found["SecretAccessKey"] = key.secret
    return found


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"
