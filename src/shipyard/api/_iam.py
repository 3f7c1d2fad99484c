"""IAM's users, access keys, groups, roles and inline policies, and STS GetCallerIdentity.

Each operation is ``(RequestContext, params) -> result``: ``params`` decoded and validated by
api/_query.py against botocore's input shape, the result written by the output shape; the work is
services/identity.py's. Requests were authorized before they get here (api/_access.py maps each
to ``iam:<Action>`` on the user, group or role ARN it names).

Who the caller is (GetCallerIdentity): the account's root (the settings' key pair) answers
``arn:aws:iam::<account>:root``; a user, its user ARN; a job's session, its assumed role
(``assumed-role/<role>/<job>``). On a server without auth, an unsigned or unknown caller answers
as a session of ``ShipyardExecutionRole`` (what a notebook's code acts as), so
``sagemaker.get_execution_role()`` finds a role there as it does in a notebook.

``get_execution_role()`` with a user's key: the SDK reads the user ARN's last part as a role
name and asks GetRole for it. GetRole of the caller's own user name answers the user's execution
role (:meth:`IdentityService.execution_role`): the role named after the user if the
administrator made one, else ``ShipyardExecutionRole``. A user may always ask that, and GetUser
of itself. On a server that does not require roles (auth off, none recorded), GetRole answers
any name, as an AWS account's role ARNs written into scripts keep working.

Policy documents are answered URL-encoded, as IAM answers them (botocore decodes them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from shipyard.api._context import RequestContext
from shipyard.core.identity import AccessKey, Group, HolderKind, Role, User, role_arn, root_arn
from shipyard.core.pagination import decode_token, encode_token
from shipyard.core.policy import Policy
from shipyard.core.simulation import EVAL_DECISIONS, SourcePolicy, simulate
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services.identity import DEFAULT_ROLE

T = TypeVar("T")
Operation = Callable[[RequestContext, dict[str, Any]], dict[str, Any]]

_DEFAULT_PAGE = 100
_SYNTHESIZED = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


# -- records as IAM answers them ---------------------------------------------------------------
def _user(user: User) -> dict[str, Any]:
    return {
        "Path": user.path,
        "UserName": user.name,
        "UserId": user.user_id,
        "Arn": user.arn,
        "CreateDate": user.created,
    }


def _group(group: Group) -> dict[str, Any]:
    return {
        "Path": group.path,
        "GroupName": group.name,
        "GroupId": group.group_id,
        "Arn": group.arn,
        "CreateDate": group.created,
    }


def _role(role: Role) -> dict[str, Any]:
    return {
        "Path": role.path,
        "RoleName": role.name,
        "RoleId": role.role_id,
        "Arn": role.arn,
        "CreateDate": role.created,
        "AssumeRolePolicyDocument": quote(role.assume_role_policy, safe=""),
        "Description": role.description or None,
        "MaxSessionDuration": role.max_session_duration,
        "RoleLastUsed": {},
    }


def _key(key: AccessKey, *, secret: bool = False) -> dict[str, Any]:
    answer = {
        "UserName": key.user_name,
        "AccessKeyId": key.access_key_id,
        "Status": key.status.value,
        "CreateDate": key.created,
    }
    if secret:
        answer["SecretAccessKey"] = key.secret_access_key
    return answer


def _page(items: Sequence[T], params: dict[str, Any]) -> tuple[list[T], dict[str, Any]]:
    """A page of ``items`` as IAM pages (``Marker``, ``MaxItems``), and its IsTruncated/Marker."""
    size = int(params.get("MaxItems") or _DEFAULT_PAGE)
    offset = 0
    marker = params.get("Marker")
    if marker:
        offset = decode_token(marker, field="Marker").get("offset", -1)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValidationError(
                f"Invalid Marker {marker!r}: pass back the Marker a previous call returned",
                field="Marker",
                value=marker,
            )
    page = list(items[offset : offset + size])
    if offset + size < len(items):
        return page, {"IsTruncated": True, "Marker": encode_token({"offset": offset + size})}
    return page, {"IsTruncated": False}


def _unsupported(params: dict[str, Any], *members: str) -> None:
    for member in members:
        if params.get(member):
            raise ValidationError(
                f"{member} is not supported by Shipyard's IAM; leave it out",
                field=member,
                value=params[member],
            )


def _own_user_name(ctx: RequestContext, params: dict[str, Any]) -> str:
    """``UserName``, else the calling user's own (IAM's rule for key operations)."""
    name = params.get("UserName")
    if name:
        return str(name)
    caller = ctx.caller
    if caller.session is None and caller.user is not None:
        return caller.user.rsplit("/", 1)[-1]
    raise ValidationError(
        "Must specify userName when calling with non-User credentials", field="UserName", value=None
    )


# -- users and access keys ---------------------------------------------------------------------
def create_user(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _unsupported(params, "Tags", "PermissionsBoundary")
    user = ctx.platform.identity.create_user(params["UserName"], path=params.get("Path"))
    return {"User": _user(user)}


def get_user(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    caller = ctx.caller
    if not params.get("UserName") and caller.session is None and caller.user is None:
        return {
            "User": {"UserId": ctx.account_id, "Arn": root_arn(ctx.account_id), "CreateDate": _SYNTHESIZED}
        }
    return {"User": _user(ctx.platform.identity.user(_own_user_name(ctx, params)))}


def list_users(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    users, more = _page(ctx.platform.identity.users(params.get("PathPrefix") or "/"), params)
    return {"Users": [_user(u) for u in users], **more}


def delete_user(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.identity.delete_user(params["UserName"])
    return {}


def create_access_key(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    key = ctx.platform.identity.create_key(_own_user_name(ctx, params))
    return {"AccessKey": _key(key, secret=True)}


def list_access_keys(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    keys, more = _page(ctx.platform.identity.keys(_own_user_name(ctx, params)), params)
    return {"AccessKeyMetadata": [_key(k) for k in keys], **more}


def update_access_key(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = _own_user_name(ctx, params)
    ctx.platform.identity.set_key_status(name, params["AccessKeyId"], params["Status"])
    return {}


def delete_access_key(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.identity.delete_key(_own_user_name(ctx, params), params["AccessKeyId"])
    return {}


# -- groups ------------------------------------------------------------------------------------
def create_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    group = ctx.platform.identity.create_group(params["GroupName"], path=params.get("Path"))
    return {"Group": _group(group)}


def get_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    group, members = ctx.platform.identity.group(params["GroupName"])
    users, more = _page(members, params)
    return {"Group": _group(group), "Users": [_user(u) for u in users], **more}


def list_groups(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    groups, more = _page(ctx.platform.identity.groups(params.get("PathPrefix") or "/"), params)
    return {"Groups": [_group(g) for g in groups], **more}


def list_groups_for_user(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    groups, more = _page(ctx.platform.identity.groups_of(params["UserName"]), params)
    return {"Groups": [_group(g) for g in groups], **more}


def add_user_to_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.identity.add_to_group(params["GroupName"], params["UserName"])
    return {}


def remove_user_from_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.identity.remove_from_group(params["GroupName"], params["UserName"])
    return {}


def delete_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.identity.delete_group(params["GroupName"])
    return {}


# -- roles -------------------------------------------------------------------------------------
def create_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _unsupported(params, "Tags", "PermissionsBoundary")
    role = ctx.platform.identity.create_role(
        params["RoleName"],
        assume_role_policy=params["AssumeRolePolicyDocument"],
        path=params.get("Path"),
        description=params.get("Description") or "",
        max_session_duration=int(params.get("MaxSessionDuration") or 3600),
    )
    return {"Role": _role(role)}


def get_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["RoleName"]
    identity = ctx.platform.identity
    caller = ctx.caller
    if caller.session is None and caller.user is not None and caller.user.rsplit("/", 1)[-1] == name:
        role = identity.execution_role(name)  # get_execution_role() of a user's key
        if role is not None:
            return {"Role": _role(role)}
    try:
        return {"Role": _role(identity.role(name))}
    except NotFoundError:
        if identity.roles_enforced():
            raise
    return {"Role": _role(_synthesized_role(ctx.account_id, name))}


def _synthesized_role(account: str, name: str) -> Role:
    """A role no one recorded, on a server that does not require roles: any name is one."""
    return Role(
        name=name,
        role_id="AROA" + hashlib.sha1(name.encode()).hexdigest()[:17].upper(),
        arn=role_arn(account, name),
        path="/",
        created=_SYNTHESIZED,
        assume_role_policy="{}",
        max_session_duration=43200,
    )


def list_roles(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    roles, more = _page(ctx.platform.identity.roles(params.get("PathPrefix") or "/"), params)
    return {"Roles": [_role(r) for r in roles], **more}


def delete_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.identity.delete_role(params["RoleName"])
    return {}


# -- inline policies ---------------------------------------------------------------------------
def _policy_operations(kind: HolderKind, noun: str) -> dict[tuple[str, str], Operation]:
    """Put/Get/List/Delete<noun>Policy for the inline policies of users, groups or roles."""
    member = f"{noun}Name"

    def put(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.platform.identity.put_policy(kind, params[member], params["PolicyName"], params["PolicyDocument"])
        return {}

    def get(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy = ctx.platform.identity.policy(kind, params[member], params["PolicyName"])
        return {
            member: policy.holder,
            "PolicyName": policy.name,
            "PolicyDocument": quote(policy.document, safe=""),
        }

    def list_names(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        names, more = _page([p.name for p in ctx.platform.identity.policies(kind, params[member])], params)
        return {"PolicyNames": names, **more}

    def delete(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.platform.identity.delete_policy(kind, params[member], params["PolicyName"])
        return {}

    return {
        ("iam", f"Put{noun}Policy"): put,
        ("iam", f"Get{noun}Policy"): get,
        ("iam", f"List{noun}Policies"): list_names,
        ("iam", f"Delete{noun}Policy"): delete,
    }


# -- the policy simulator ----------------------------------------------------------------------
def simulate_principal_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The policies of PolicySourceArn's user, group or role (and PolicyInputList's) decide."""
    administrator, held = ctx.platform.identity.policies_of(params["PolicySourceArn"])
    sources = [SourcePolicy(p.name, p.holder_kind.value, p.policy) for p in held]
    return _simulation(ctx, params, sources + _input_policies(params), administrator=administrator)


def simulate_custom_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _simulation(ctx, params, _input_policies(params), administrator=False)


def _input_policies(params: dict[str, Any]) -> list[SourcePolicy]:
    _unsupported(params, "PermissionsBoundaryPolicyInputList", "ResourcePolicy")
    return [
        SourcePolicy(f"PolicyInputList.{n}", "none", Policy.from_document(document))
        for n, document in enumerate(params.get("PolicyInputList") or [], start=1)
    ]


def _simulation(
    ctx: RequestContext, params: dict[str, Any], sources: list[SourcePolicy], *, administrator: bool
) -> dict[str, Any]:
    context = {
        str(entry["ContextKeyName"]): str((entry.get("ContextKeyValues") or [""])[0])
        for entry in params.get("ContextEntries") or []
        if entry.get("ContextKeyName")
    }
    results = simulate(
        sources,
        params["ActionNames"],
        params.get("ResourceArns") or ["*"],
        context,
        administrator=administrator,
    )
    page, more = _page(results, params)
    return {
        "EvaluationResults": [
            {
                "EvalActionName": r.action,
                "EvalResourceName": r.resource,
                "EvalDecision": EVAL_DECISIONS[r.decision],
                "MatchedStatements": [
                    {"SourcePolicyId": s.policy_id, "SourcePolicyType": s.source_type} for s in r.matched
                ],
                "MissingContextValues": [],
            }
            for r in page
        ],
        **more,
    }


# -- STS ---------------------------------------------------------------------------------------
def get_caller_identity(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    caller, account = ctx.caller, ctx.account_id
    identity = ctx.platform.identity
    if caller.session is not None:  # a job's session: its assumed role, its job's name
        role_name, _, session = caller.arn.rpartition(":assumed-role/")[2].partition("/")
        role = identity.role_named(role_name)
        role_id = role.role_id if role else "AROA" + hashlib.sha1(role_name.encode()).hexdigest()[:17].upper()
        return {"Arn": caller.arn, "UserId": f"{role_id}:{session}", "Account": account}
    if caller.user is not None:  # a user's key
        try:
            user_id = identity.user(caller.user.rsplit("/", 1)[-1]).user_id
        except NotFoundError:  # deleted since its principal was cached
            user_id = caller.user.rsplit("/", 1)[-1]
        return {"Arn": caller.arn, "UserId": user_id, "Account": account}
    settings = ctx.platform.settings
    key = ctx.access_key_id
    if key and settings.access_key_id and hmac.compare_digest(key.encode(), settings.access_key_id.encode()):
        return {"Arn": root_arn(account), "UserId": account, "Account": account}
    # No auth: the one user of the server, as a notebook's code (its execution role's session).
    session = key or "shipyard"
    return {
        "Arn": f"arn:aws:sts::{account}:assumed-role/{DEFAULT_ROLE}/{session}",
        "UserId": f"AROASHIPYARD{account}:{session}",
        "Account": account,
    }


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("sts", "GetCallerIdentity"): get_caller_identity,
    ("iam", "CreateUser"): create_user,
    ("iam", "GetUser"): get_user,
    ("iam", "ListUsers"): list_users,
    ("iam", "DeleteUser"): delete_user,
    ("iam", "CreateAccessKey"): create_access_key,
    ("iam", "ListAccessKeys"): list_access_keys,
    ("iam", "UpdateAccessKey"): update_access_key,
    ("iam", "DeleteAccessKey"): delete_access_key,
    ("iam", "CreateGroup"): create_group,
    ("iam", "GetGroup"): get_group,
    ("iam", "ListGroups"): list_groups,
    ("iam", "ListGroupsForUser"): list_groups_for_user,
    ("iam", "AddUserToGroup"): add_user_to_group,
    ("iam", "RemoveUserFromGroup"): remove_user_from_group,
    ("iam", "DeleteGroup"): delete_group,
    ("iam", "CreateRole"): create_role,
    ("iam", "GetRole"): get_role,
    ("iam", "ListRoles"): list_roles,
    ("iam", "DeleteRole"): delete_role,
    ("iam", "SimulatePrincipalPolicy"): simulate_principal_policy,
    ("iam", "SimulateCustomPolicy"): simulate_custom_policy,
    **_policy_operations(HolderKind.USER, "User"),
    **_policy_operations(HolderKind.GROUP, "Group"),
    **_policy_operations(HolderKind.ROLE, "Role"),
}
"""Every IAM and STS operation Shipyard answers, by (service, Action)."""
