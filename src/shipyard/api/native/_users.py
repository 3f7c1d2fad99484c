"""/api/v1/users: the lab's users as an administrator sees them, and what IAM has no operation
for — whether a user is an administrator, and whether it is enabled (``shipyard users``).

Users, keys, groups and policies are made through the IAM API; these routes add the two flags
Shipyard keeps beside them. Neither amounts to an AWS operation, so they are an
administrator's (``shipyard:Users`` / ``shipyard:UpdateUser``); no secret is ever answered.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request

from shipyard.api.native._common import iso, platform_of
from shipyard.core.identity import User
from shipyard.errors import ValidationError
from shipyard.services import Platform

router = APIRouter()
_FLAGS = ("administrator", "enabled")


def _view(platform: Platform, user: User) -> dict[str, Any]:
    identity = platform.identity
    return {
        "name": user.name,
        "arn": user.arn,
        "user_id": user.user_id,
        "path": user.path,
        "created": iso(user.created),
        "administrator": user.admin,
        "enabled": user.enabled,
        "groups": [g.name for g in identity.groups_of(user.name)],
        "access_keys": [
            {"access_key_id": k.access_key_id, "status": k.status.value, "created": iso(k.created)}
            for k in identity.keys(user.name)
        ],
    }


@router.get("/api/v1/users", tags=["users"])
def users(request: Request) -> list[dict[str, Any]]:
    """Every user: ARN, whether an administrator and enabled, groups, access key ids and their
    status."""
    platform = platform_of(request)
    return [_view(platform, u) for u in platform.identity.users()]


@router.patch("/api/v1/users/{name}", tags=["users"])
def update_user(request: Request, name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """Make a user an administrator or not (``administrator``), enable or disable it
    (``enabled``: a disabled user's keys are refused, its work and keys kept)."""
    for key, value in body.items():
        if key not in _FLAGS:
            raise ValidationError(
                f"{key!r} is not a user setting (settings: {', '.join(_FLAGS)})", field=key, value=value
            )
        if not isinstance(value, bool):
            raise ValidationError(f"{key} must be true or false, got {value!r}", field=key, value=value)
    platform = platform_of(request)
    user = platform.identity.set_user(name, enabled=body.get("enabled"), admin=body.get("administrator"))
    return _view(platform, user)
