"""Who a request acts as, and whether it may: session keys checked, requests mapped to IAM actions.

The server's master key acts as the administrator (everything allowed). A job's session key
(``ASIA...``, issued by services/credentials.py) must come with its session token, unexpired and
unrevoked, and may do only what its scope policy allows. :func:`request_actions` maps a request
to the IAM actions and resources it needs, as AWS names them (``s3:GetObject`` on
``arn:aws:s3:::bucket/key``, ``sagemaker:CreateTrainingJob`` on the job's ARN, ...); it is pure.
:func:`authorize` decides a request with them and answers a refusal in the protocol's own form.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard.api._json import json_error
from shipyard.api._ownership import ownership_refusal
from shipyard.api._query import query_error
from shipyard.api._unserved import unserved_error
from shipyard.api.runtime import COMPONENT_HEADER, endpoint_name, runtime_error
from shipyard.api.s3._xml import error_document
from shipyard.core.arn import sagemaker_arn
from shipyard.core.credentials import Principal, S3Grant, SessionCredentials, s3_grants, unreachable
from shipyard.core.identity import role_name_of
from shipyard.core.policy import Decision
from shipyard.core.roles import (
    PIPELINE_DEFINERS,
    ROLE_OPERATIONS,
    RoleReference,
    could_not_assume,
    is_role_arn,
    passed_roles,
    pipeline_roles,
)
from shipyard.errors import (
    AccessDenied,
    AuthenticationError,
    ExpiredSessionToken,
    InvalidSessionToken,
    NotFoundError,
    ValidationError,
)
from shipyard.services import Platform

# SageMaker's resources as operations name them: the noun in the operation, the request member
# that names it, the ARN's resource type. Longest nouns first ("EndpointConfig" before "Endpoint").
_SAGEMAKER_NOUNS = sorted(
    [
        ("HyperParameterTuningJob", "HyperParameterTuningJobName", "hyper-parameter-tuning-job"),
        ("TrainingJob", "TrainingJobName", "training-job"),
        ("ProcessingJob", "ProcessingJobName", "processing-job"),
        ("TransformJob", "TransformJobName", "transform-job"),
        ("InferenceComponent", "InferenceComponentName", "inference-component"),
        ("EndpointConfig", "EndpointConfigName", "endpoint-config"),
        ("Endpoint", "EndpointName", "endpoint"),
        ("ModelPackageGroup", "ModelPackageGroupName", "model-package-group"),
        ("ModelPackage", "ModelPackageName", "model-package"),
        ("Model", "ModelName", "model"),
        ("Pipeline", "PipelineName", "pipeline"),
        ("TrialComponent", "TrialComponentName", "experiment-trial-component"),
        ("Trial", "TrialName", "experiment-trial"),
        ("Experiment", "ExperimentName", "experiment"),
        ("Artifact", "ArtifactArn", "artifact"),
        ("Context", "ContextName", "context"),
        ("Action", "ActionName", "action"),
        ("NotebookInstance", "NotebookInstanceName", "notebook-instance"),
    ],
    key=lambda noun: -len(noun[0]),
)
# The IAM service prefix of each JSON service (by its X-Amz-Target prefix).
_JSON_SERVICES = {
    "SageMaker": "sagemaker",
    "Logs_20140328": "logs",
    "GraniteServiceVersion20100801": "cloudwatch",
    "AnyScaleFrontendService": "application-autoscaling",
    "AWSInsightsIndexService": "ce",
}
# S3 subresources with IAM names of their own: (object?, method) -> action suffix.
_S3_SUBRESOURCES = {
    "acl": "Acl",
    "tagging": "Tagging",
    "versioning": "Versioning",
    "policy": "Policy",
    "cors": "Cors",
    "lifecycle": "LifecycleConfiguration",
    "encryption": "EncryptionConfiguration",
    "retention": "Retention",
    "legal-hold": "LegalHold",
    "attributes": "Attributes",
}
_VERBS = {"GET": "Get", "HEAD": "Get", "PUT": "Put", "DELETE": "Delete", "POST": "Put"}
_LAUNCHES = {
    "CreateTrainingJob": "training",
    "CreateProcessingJob": "processing",
    "CreateTransformJob": "transform",
    "CreateHyperParameterTuningJob": "tuning",
}


# The IAM entity each IAM action acts on: its kind and the member naming it. Key operations
# without a UserName act on the calling user (IAM's rule); List* of a kind name no entity.
_IAM_ENTITIES: dict[str, tuple[str, str]] = {
    **{
        action: ("user", "UserName")
        for action in (
            "CreateUser",
            "GetUser",
            "DeleteUser",
            "CreateAccessKey",
            "ListAccessKeys",
            "UpdateAccessKey",
            "DeleteAccessKey",
            "ListGroupsForUser",
            "PutUserPolicy",
            "GetUserPolicy",
            "ListUserPolicies",
            "DeleteUserPolicy",
        )
    },
    **{
        action: ("group", "GroupName")
        for action in (
            "CreateGroup",
            "GetGroup",
            "DeleteGroup",
            "AddUserToGroup",
            "RemoveUserFromGroup",
            "PutGroupPolicy",
            "GetGroupPolicy",
            "ListGroupPolicies",
            "DeleteGroupPolicy",
        )
    },
    **{
        action: ("role", "RoleName")
        for action in (
            "CreateRole",
            "GetRole",
            "DeleteRole",
            "PutRolePolicy",
            "GetRolePolicy",
            "ListRolePolicies",
            "DeleteRolePolicy",
        )
    },
}


@dataclasses.dataclass(frozen=True)
class RequestedAction:
    """One permission a request needs: ``action`` on ``resource``, with condition keys.
    ``own``: the caller's own record (GetUser of itself, the GetRole that finds its execution
    role), which a user may always read."""

    action: str
    resource: str
    context: Mapping[str, str] = dataclasses.field(default_factory=dict)
    own: bool = False


def request_actions(
    protocol: str,
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    target: str = "",
    service: str | None = None,
    body: bytes | None = None,
    params: Mapping[str, Any] | None = None,
    region: str,
    account: str,
    caller: str | None = None,
) -> list[RequestedAction]:
    """The permissions a request needs (every one must be allowed). ``protocol`` as the app
    routes it: ``json``, ``runtime``, ``metrics``, ``query``, ``ec2``, ``s3`` or ``unknown``;
    ``path`` is the raw (percent-encoded) path; ``body`` is needed for JSON and query requests only (a JSON body's
    object may be given already read, as ``params``); ``caller``: the ARN of the user the
    request is signed by (None: not a user's key)."""
    if protocol == "json":
        prefix, _, operation = target.partition(".")
        iam_service = _JSON_SERVICES.get(prefix, prefix.lower())
        params = _json_object(body) if params is None else params
        if iam_service == "sagemaker":
            return [
                RequestedAction(
                    f"sagemaker:{operation}", _sagemaker_resource(operation, params, region, account)
                )
            ]
        if iam_service == "logs":
            return [RequestedAction(f"logs:{operation}", _logs_resource(params, region, account))]
        return [RequestedAction(f"{iam_service}:{operation}", "*")]
    if protocol == "metrics":  # SageMaker Metrics (REST-JSON): BatchPutMetrics names a trial component
        params = _json_object(body) if params is None else params
        queries = params.get("MetricQueries")
        if isinstance(queries, list):  # BatchGetMetrics: each query's resource (a component, a job)
            arns = [q.get("ResourceArn") for q in queries if isinstance(q, Mapping)]
            named = sorted({a.lower() for a in arns if isinstance(a, str) and a.startswith("arn:")})
            return [RequestedAction(f"sagemaker:{path.strip('/')}", a) for a in named or ["*"]]
        name = params.get("TrialComponentName")
        resource = "*"
        if isinstance(name, str) and name:
            resource = sagemaker_arn(region, account, "experiment-trial-component", name)
        return [RequestedAction(f"sagemaker:{path.strip('/')}", resource)]
    if protocol == "runtime":
        endpoint = endpoint_name(path)  # as the call reads it: the same endpoint
        action = (
            "sagemaker:InvokeEndpointAsync"
            if path.endswith("/async-invocations")
            else "sagemaker:InvokeEndpoint"
        )
        needed = [RequestedAction(action, sagemaker_arn(region, account, "endpoint", endpoint))]
        component = headers.get(COMPONENT_HEADER)
        if component:  # and the inference component it names (IAM's resource for it too)
            needed.append(
                RequestedAction(action, sagemaker_arn(region, account, "inference-component", component))
            )
        return needed
    if protocol in ("query", "ec2"):
        params = dict(parse_qsl((body or b"").decode("utf-8", "replace"), keep_blank_values=True))
        params.update(query)
        name = service or "sts"
        action = params.get("Action", "")
        if name == "iam" and action in _IAM_ENTITIES:
            return [_iam_action(action, params, account, caller)]
        if name == "iam" and action == "SimulatePrincipalPolicy":  # a user may simulate itself
            source = params.get("PolicySourceArn", "")
            return [RequestedAction(f"iam:{action}", source or "*", own=bool(caller) and source == caller)]
        return [RequestedAction(f"{name}:{action}", "*")]
    if protocol == "s3":
        return _s3_actions(method, path, query, headers)
    return [RequestedAction(f"{service or 'unknown'}:*", "*")]


def _iam_action(action: str, params: Mapping[str, str], account: str, caller: str | None) -> RequestedAction:
    """``iam:<Action>`` on the user, group or role it names (by name, path ``/``: a request
    names no path except CreateUser/Group/Role's ``Path``)."""
    kind, member = _IAM_ENTITIES[action]
    name = params.get(member, "")
    caller_name = caller.rsplit("/", 1)[-1] if caller and ":user/" in caller else None
    if kind == "user" and not name and caller and caller_name:
        return RequestedAction(f"iam:{action}", caller, own=action == "GetUser")  # itself
    path = (params.get("Path") or "/") if action.startswith("Create") else "/"
    if not path.startswith("/") or not path.endswith("/"):
        path = "/"
    arn = f"arn:aws:iam::{account}:{kind}{path}{name}"
    own = (action == "GetUser" and name == caller_name) or (action == "GetRole" and name == caller_name)
    return RequestedAction(f"iam:{action}", arn, own=bool(name) and own)


def _json_object(body: bytes | None) -> Mapping[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # refused later, by the JSON API, saying why
        return {}
    return value if isinstance(value, dict) else {}


def _sagemaker_resource(operation: str, params: Mapping[str, Any], region: str, account: str) -> str:
    """The ARN an operation acts on, from the request's name members; ``*`` where it names none
    (List calls) or names it in a way not understood here."""
    for member in ("PipelineExecutionArn", "ResourceArn"):
        value = params.get(member)
        if isinstance(value, str) and value:
            return value
    for noun, member, resource_type in _SAGEMAKER_NOUNS:
        if noun in operation and isinstance(params.get(member), str) and params[member]:
            value = params[member]
            return value if value.startswith("arn:") else sagemaker_arn(region, account, resource_type, value)
    return "*"


def _logs_resource(params: Mapping[str, Any], region: str, account: str) -> str:
    group = params.get("logGroupName")
    if not isinstance(group, str) or not group:
        return "*"
    arn = f"arn:aws:logs:{region}:{account}:log-group:{group}"
    stream = params.get("logStreamName")
    return f"{arn}:log-stream:{stream}" if isinstance(stream, str) and stream else arn


def _s3_actions(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
) -> list[RequestedAction]:
    bucket, key = _bucket_and_key(path, headers.get("host", ""))
    if bucket is None:
        return [RequestedAction("s3:ListAllMyBuckets", "*")]
    bucket_arn = f"arn:aws:s3:::{bucket}"
    verb = _VERBS.get(method, method.title())
    for sub, suffix in _S3_SUBRESOURCES.items():
        if sub in query:
            if sub == "versioning" or key is None:
                return [RequestedAction(f"s3:{verb}Bucket{suffix}", bucket_arn)]
            return [RequestedAction(f"s3:{verb}Object{suffix}", f"{bucket_arn}/{key}")]
    if key is None:
        if method == "GET" and "location" in query:
            return [RequestedAction("s3:GetBucketLocation", bucket_arn)]
        if method == "GET" and "uploads" in query:
            return [RequestedAction("s3:ListBucketMultipartUploads", bucket_arn)]
        if method == "GET" and "versions" in query:
            return [RequestedAction("s3:ListBucketVersions", bucket_arn)]
        if method in ("GET", "HEAD"):  # ListObjects(V2) and HeadBucket: listing, under a prefix
            prefix = query.get("prefix")
            return [
                RequestedAction("s3:ListBucket", bucket_arn, {} if prefix is None else {"s3:prefix": prefix})
            ]
        if method == "POST" and "delete" in query:
            # DeleteObjects names its keys in the body, unread here: it needs the whole bucket.
            return [RequestedAction("s3:DeleteObject", f"{bucket_arn}/*")]
        actions = {"PUT": "s3:CreateBucket", "DELETE": "s3:DeleteBucket"}
        return [RequestedAction(actions.get(method, f"s3:{verb}Bucket"), bucket_arn)]
    object_arn = f"{bucket_arn}/{key}"
    if "uploadId" in query:
        actions = {
            "PUT": "s3:PutObject",
            "POST": "s3:PutObject",
            "DELETE": "s3:AbortMultipartUpload",
            "GET": "s3:ListMultipartUploadParts",
        }
        found = [RequestedAction(actions.get(method, "s3:PutObject"), object_arn)]
    else:
        actions = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "DELETE": "s3:DeleteObject"}
        found = [RequestedAction(actions.get(method, "s3:PutObject"), object_arn)]
    source = headers.get("x-amz-copy-source")
    if source and method == "PUT":  # CopyObject / UploadPartCopy read their source too
        source_path = unquote(source, errors="replace").split("?", 1)[0].lstrip("/")
        found.append(RequestedAction("s3:GetObject", f"arn:aws:s3:::{source_path}"))
    return found


def _bucket_and_key(path: str, host: str) -> tuple[str | None, str | None]:
    """As the S3 API reads them (path-style, or a ``<bucket>.localhost`` host); a key with an
    invalid percent escape keeps a replacement character (its request is refused later)."""
    raw = path.split("?", 1)[0]
    hostname = host.rsplit(":", 1)[0]
    if hostname.endswith(".localhost"):
        key = unquote(raw[1:], errors="replace") if len(raw) > 1 else None
        return hostname.removesuffix(".localhost"), key
    trimmed = raw.lstrip("/")
    if not trimmed:
        return None, None
    bucket, slash, key = trimmed.partition("/")
    return unquote(bucket, errors="replace"), (unquote(key, errors="replace") if slash and key else None)


# -- authentication of a session key ---------------------------------------------------------------
def check_session(
    session: SessionCredentials | None, access_key_id: str, token: str, now: dt.datetime
) -> SessionCredentials:
    """``session`` (found by ``access_key_id``) as a request may use it: with its own token,
    before its expiration.

    Raises:
        InvalidSessionToken: unknown or revoked, or the token is missing or not its own.
        ExpiredSessionToken: past its expiration.
    """
    if session is None:
        raise InvalidSessionToken(
            f"the session key {access_key_id} is unknown or was revoked (its job ended)"
        )
    if not token:
        raise InvalidSessionToken(
            f"a request signed with the session key {access_key_id} must carry its session token "
            "(X-Amz-Security-Token)"
        )
    if not hmac.compare_digest(token.encode(), session.session_token.encode()):
        raise InvalidSessionToken(f"X-Amz-Security-Token is not the session token of {access_key_id}")
    if session.expired(now):
        raise ExpiredSessionToken(access_key_id, session.expiration.isoformat())
    return session


def session_token_of(request: Request) -> str:
    """The session token a request carries (header, or a presigned URL's query)."""
    return request.headers.get("x-amz-security-token") or request.query_params.get("X-Amz-Security-Token", "")


def token_error(
    target: str, service: str | None, protocol: str, exc: AuthenticationError, request_id: str
) -> Response | None:
    """A session key's refusal in AWS's own codes (None for other authentication errors)."""
    expired = isinstance(exc, ExpiredSessionToken)
    if not expired and not isinstance(exc, InvalidSessionToken):
        return None
    if target or protocol in ("runtime", "metrics"):
        code = "ExpiredTokenException" if expired else "UnrecognizedClientException"
        return json_error(code, exc.message, 403, request_id)
    if service in ("sts", "iam"):
        return query_error(
            service, "ExpiredToken" if expired else "InvalidClientTokenId", exc.message, 403, request_id
        )
    code = "ExpiredToken" if expired else "InvalidToken"
    return Response(
        error_document(code, exc.message, request_id), 400 if expired else 403, media_type="application/xml"
    )


# -- authorization ---------------------------------------------------------------------------------
async def authorize(
    principal: Principal,
    protocol: str,
    request: Request,
    *,
    target: str,
    service: str | None,
    region: str,
    platform: Platform,
    request_id: str,
) -> Response | None:
    """None when ``principal`` may make ``request``; else the refusal (403 AccessDenied in the
    protocol's form). A session that launches a job may give it only data it can reach itself.
    A SageMaker request that passes a role is checked for it (:func:`_passed_roles_refusal`),
    administrators' too."""
    operation = target.partition(".")[2] if target.startswith("SageMaker.") else ""
    if principal.is_administrator:
        return await _passed_roles_refusal(principal, operation, request, platform, request_id)
    account = platform.settings.account_id
    body = await request.body() if protocol in ("json", "query", "ec2", "metrics") else None
    params = _json_object(body) if protocol in ("json", "metrics") else {}  # read once: every request
    needed = request_actions(
        protocol,
        method=request.method,
        path=(request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1"),
        query={} if protocol == "json" else request.query_params,
        headers=request.headers,
        target=target,
        service=service,
        body=body,
        params=params,
        region=region,
        account=account,
        caller=principal.user if principal.session is None else None,
    )
    for item in needed:
        if item.own:
            continue
        decision = principal.decide(item.action, item.resource, item.context)
        if not decision.allowed:
            reason = "no identity-based policy allows the " + item.action + " action"
            error = AccessDenied(
                principal.arn, item.action, item.resource, reason, explicit=decision is Decision.EXPLICIT_DENY
            )
            return denied(protocol, service, error, request_id)
    grants: Sequence[S3Grant] = ()
    if operation in _LAUNCHES:
        grants = await run_in_threadpool(_launch_grants, platform, _LAUNCHES[operation], params)
        missing = unreachable(principal, grants)
        if missing:
            action, resource = missing[0]
            reason = f"the job it would launch needs {action} on {resource}, which it may not do itself"
            error = AccessDenied(principal.arn, f"sagemaker:{operation}", needed[0].resource, reason)
            return denied(protocol, service, error, request_id)
    # Then ownership: what the request names must be the user's, its groups' or the lab's.
    refusal = await ownership_refusal(
        principal,
        needed,
        protocol=protocol,
        target=target,
        params=params,
        grants=grants,
        region=region,
        platform=platform,
    )
    if refusal is not None:
        return denied(protocol, service, refusal, request_id)
    return await _passed_roles_refusal(principal, operation, request, platform, request_id)


async def _passed_roles_refusal(
    principal: Principal, operation: str, request: Request, platform: Platform, request_id: str
) -> Response | None:
    """The refusal of a SageMaker request passing a role (``core/roles.py``) where the server
    requires roles (:meth:`IdentityService.roles_enforced`): a non-administrator needs
    ``iam:PassRole`` on it (AccessDeniedException), and it must be a recorded role
    (ValidationException, SageMaker's "Could not assume role"). None when it may."""
    if operation not in ROLE_OPERATIONS:
        return None
    params = _json_object(await request.body())
    references = await run_in_threadpool(_passed_roles, platform, operation, params)
    if not references:
        return None
    identity = platform.identity
    if not await run_in_threadpool(identity.roles_enforced):
        return None
    for reference in references:
        decision = principal.decide("iam:PassRole", reference.arn)
        if not principal.is_administrator and not decision.allowed:
            reason = "no identity-based policy allows the iam:PassRole action"
            explicit = decision is Decision.EXPLICIT_DENY
            error = AccessDenied(principal.arn, "iam:PassRole", reference.arn, reason, explicit=explicit)
            return denied("json", None, error, request_id)
        if await run_in_threadpool(identity.find_role, reference.arn) is None:
            name = role_name_of(reference.arn) or ""
            same_name = await run_in_threadpool(identity.role_named, name)
            message = could_not_assume(reference, same_name.arn if same_name else None)
            return json_error("ValidationException", message, 400, request_id)
    return None


def _passed_roles(platform: Platform, operation: str, params: Mapping[str, Any]) -> list[RoleReference]:
    """The roles a SageMaker request passes: its own role members, a transform job's model's
    role, and the roles a pipeline definition's steps name."""
    found = passed_roles(operation, params)
    if operation == "CreateTransformJob" and isinstance(params.get("ModelName"), str):
        try:
            role = platform.models.get(params["ModelName"])[0].request.get("ExecutionRoleArn")
        except NotFoundError:  # the create fails on its own, saying so
            role = None
        if is_role_arn(role):
            found.append(
                RoleReference(f"ModelName (the model {params['ModelName']}'s ExecutionRoleArn)", role)
            )
    if operation in PIPELINE_DEFINERS and (
        params.get("PipelineDefinition") is not None or params.get("PipelineDefinitionS3Location")
    ):
        try:
            definition = platform.pipelines.definition_text(params)
        except (ValidationError, KeyError, TypeError):  # the create fails on its own, saying so
            definition = ""
        found += pipeline_roles(definition)
    return found


def _launch_grants(platform: Platform, kind: str, params: Mapping[str, Any]) -> Sequence[S3Grant]:
    """What a job about to be created would read and write (a transform job: its model's too)."""
    model: Mapping[str, Any] | None = None
    if kind == "transform" and isinstance(params.get("ModelName"), str):
        try:
            container = platform.models.get(params["ModelName"])[1].container
        except NotFoundError:  # the create fails on its own, saying so
            container = None
        if container is not None:
            model = {"model_data_url": container.model_data_url, "environment": dict(container.environment)}
    return s3_grants(kind, params, model=model)


def denied(protocol: str, service: str | None, error: AccessDenied, request_id: str) -> Response:
    """A refusal in the protocol's form: AWS JSON's AccessDeniedException, S3's AccessDenied, ..."""
    if protocol in ("json", "metrics"):
        return json_error("AccessDeniedException", error.message, 403, request_id)
    if protocol in ("ec2", "unknown"):  # in the service's own protocol (api/_unserved.py)
        return unserved_error(service, error.message, request_id, status=403, code="AccessDenied")
    if protocol == "runtime":
        return runtime_error("AccessDeniedException", error.message, 403, request_id)
    if protocol == "query":
        return query_error(service or "sts", "AccessDenied", error.message, 403, request_id)
    return Response(
        error_document("AccessDenied", error.message, request_id), 403, media_type="application/xml"
    )


def native_denied(principal: Principal) -> Response:
    """The native API is the administrator's: a session key gets 403 naming itself."""
    message = (
        f"User: {principal.arn} is not authorized to use the native API (/api/): a job's session "
        "credentials reach the AWS APIs only"
    )
    return Response(
        json.dumps({"error": "AccessDenied", "message": message}), 403, media_type="application/json"
    )
