"""Who may call which native route: each route amounts to an IAM action on a resource.

The rule (docs/architecture.md, "The native API"):

- A route that does what an AWS operation does needs that operation's IAM action on the
  resource's ARN, as the AWS API would: ``GET /api/v1/training-jobs/{name}`` is
  ``sagemaker:DescribeTrainingJob`` on the job's ARN, ``POST /api/v1/jobs/training/{name}/stop``
  ``sagemaker:StopTrainingJob``, ``GET /api/v1/jobs/training`` ``sagemaker:ListTrainingJobs`` on
  ``*``, a job's log ``logs:GetLogEvents`` on its log streams, ``/api/v1/costs``
  ``ce:GetCostAndUsage``, budgets ``budgets:ViewBudget`` / ``budgets:ModifyBudget``. A resource's
  metrics and utilization are part of describing it.
- A named resource must also be reachable by the caller (``IdentityService.reachable``, the rule
  of ``core.identity.may_reach``): its owner's, shared with one of the caller's groups, or the
  lab's. A job's log and a pipeline run are reached through their job and pipeline.
- The server's own facts (health, info, whoami, the instance catalog, cost estimates, the OpenAPI
  document) are every signed-in caller's.
- Any other route needs ``shipyard:<Name>`` on ``*`` (``Name``: the route function's name in
  CamelCase, e.g. ``shipyard:Waste``): administrators have it, and a user whose policy grants it.

Lists (:func:`listing`) show what the caller may reach and describe. Job sessions never get
here: api/app.py refuses them on the native API.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from fastapi import HTTPException, Request

from shipyard.api.native._common import platform_of
from shipyard.core.arn import sagemaker_arn
from shipyard.core.credentials import Principal
from shipyard.core.policy import Decision
from shipyard.errors import AccessDenied, NotFoundError
from shipyard.services import Platform

T = TypeVar("T")

EVERYONE = "everyone"
"""A route every signed-in caller may use (the server's own facts)."""
CHUNK = 500  # rows a filtered list reads at a time

# The job kinds of /api/v1/jobs/{kind} and the collections of /{collection}/{name}/utilization:
# (the operation's noun, the ARN's resource type).
_JOBS = {
    "training": ("TrainingJob", "training-job"),
    "processing": ("ProcessingJob", "processing-job"),
    "transform": ("TransformJob", "transform-job"),
}
_COLLECTIONS = {
    "training-jobs": ("TrainingJob", "training-job"),
    "processing-jobs": ("ProcessingJob", "processing-job"),
    "transform-jobs": ("TransformJob", "transform-job"),
    "endpoints": ("Endpoint", "endpoint"),
}
_LOG_GROUPS = {"training": "TrainingJobs", "processing": "ProcessingJobs", "transform": "TransformJobs"}


@dataclasses.dataclass(frozen=True)
class Requirement:
    """What a call needs: ``action`` on ``resource`` (an ARN or ``*``), and, when ``reach`` is
    an ARN, that the caller may reach that resource at all."""

    action: str
    resource: str = "*"
    reach: str | None = None


class _Arns:
    """The ARNs of the resources a route names: the stored record's (a resource keeps the
    region it was made in), else the one SageMaker would give it here."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.region = platform.settings.region
        self.account = platform.settings.account_id

    def of(self, resource_type: str, name: str) -> str:
        stored = self._stored(resource_type, name)
        return stored or sagemaker_arn(self.region, self.account, resource_type, name)

    def _stored(self, resource_type: str, name: str) -> str | None:
        p = self.platform
        find: dict[str, Callable[[], Any]] = {
            "training-job": lambda: p.training.repository.get(name),
            "processing-job": lambda: p.processing.repository.get(name),
            "transform-job": lambda: p.transform.repository.get(name),
            "hyper-parameter-tuning-job": lambda: p.tuning.repository.get(name),
            "endpoint": lambda: p.endpoints.repository.get(name),
            "pipeline": lambda: p.pipelines.repository.get(name),
            "notebook-instance": lambda: p.notebooks.repository.get(name),
        }
        try:
            return str(find[resource_type]().arn)
        except NotFoundError:  # the route answers 404 on its own
            return None

    def package(self, group: str, version: str) -> str:
        try:
            return self.platform.registry.packages.get(group, int(version)).arn
        except (NotFoundError, ValueError):
            return sagemaker_arn(self.region, self.account, "model-package", f"{group}/{version}")

    def log_streams(self, kind: str, name: str) -> str:
        group = f"/aws/sagemaker/{_LOG_GROUPS[kind]}"
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}:log-stream:{name}/*"


Rule = Callable[[Mapping[str, str], _Arns], "Requirement | str"]
"""What a route needs, from its path parameters: a :class:`Requirement`, or :data:`EVERYONE`."""


def _named(verb: str, noun: str, resource_type: str, member: str = "name") -> Rule:
    def rule(params: Mapping[str, str], arns: _Arns) -> Requirement:
        arn = arns.of(resource_type, params[member])
        return Requirement(f"sagemaker:{verb}{noun}", arn, arn)

    return rule


def _listed(action: str) -> Rule:
    return lambda params, arns: Requirement(action)


def _job(verb: str) -> Rule:
    def rule(params: Mapping[str, str], arns: _Arns) -> Requirement | str:
        if params["kind"] not in _JOBS:
            return EVERYONE  # the route refuses the kind, naming it
        noun, resource_type = _JOBS[params["kind"]]
        arn = arns.of(resource_type, params["name"])
        return Requirement(f"sagemaker:{verb}{noun}", arn, arn)

    return rule


def _jobs_list(params: Mapping[str, str], arns: _Arns) -> Requirement | str:
    if params["kind"] not in _JOBS:
        return EVERYONE
    return Requirement(f"sagemaker:List{_JOBS[params['kind']][0]}s")


def _job_log(params: Mapping[str, str], arns: _Arns) -> Requirement | str:
    if params["kind"] not in _JOBS:
        return EVERYONE
    job = arns.of(_JOBS[params["kind"]][1], params["name"])
    return Requirement("logs:GetLogEvents", arns.log_streams(params["kind"], params["name"]), job)


def _utilization(params: Mapping[str, str], arns: _Arns) -> Requirement | str:
    if params["collection"] not in _COLLECTIONS:
        return EVERYONE  # 404, naming the collection
    noun, resource_type = _COLLECTIONS[params["collection"]]
    arn = arns.of(resource_type, params["name"])
    return Requirement(f"sagemaker:Describe{noun}", arn, arn)


def _execution(params: Mapping[str, str], arns: _Arns) -> Requirement:
    pipeline = arns.of("pipeline", params["name"])
    run = f"{pipeline}/execution/{params['execution_id']}"
    return Requirement("sagemaker:DescribePipelineExecution", run, pipeline)


def _approval(params: Mapping[str, str], arns: _Arns) -> Requirement:
    arn = arns.package(params["group"], params["version"])
    return Requirement("sagemaker:UpdateModelPackage", arn, arn)


def _budget(action: str) -> Rule:
    def rule(params: Mapping[str, str], arns: _Arns) -> Requirement:
        name = params.get("name")
        resource = f"arn:aws:budgets::{arns.account}:budget/{name}" if name else "*"
        return Requirement(f"budgets:{action}", resource)

    return rule


def _everyone(params: Mapping[str, str], arns: _Arns) -> str:
    return EVERYONE


ROUTES: dict[tuple[str, str], Rule] = {
    ("GET", "/api/v1/health"): _everyone,
    ("GET", "/api/v1/info"): _everyone,
    ("GET", "/api/v1/whoami"): _everyone,
    ("GET", "/api/v1/instance-types"): _everyone,
    ("GET", "/api/v1/instance-types/{name}"): _everyone,
    ("POST", "/api/v1/estimates"): _everyone,
    ("GET", "/api/v1/training-jobs/{name}"): _named("Describe", "TrainingJob", "training-job"),
    ("GET", "/api/v1/training-jobs/{name}/metrics"): _named("Describe", "TrainingJob", "training-job"),
    ("GET", "/api/v1/processing-jobs/{name}"): _named("Describe", "ProcessingJob", "processing-job"),
    ("GET", "/api/v1/transform-jobs/{name}"): _named("Describe", "TransformJob", "transform-job"),
    ("GET", "/api/v1/jobs/{kind}"): _jobs_list,
    ("GET", "/api/v1/jobs/{kind}/{name}"): _job("Describe"),
    ("GET", "/api/v1/jobs/{kind}/{name}/log"): _job_log,
    ("POST", "/api/v1/jobs/{kind}/{name}/stop"): _job("Stop"),
    ("GET", "/api/v1/{collection}/{name}/utilization"): _utilization,
    ("GET", "/api/v1/tuning-jobs"): _listed("sagemaker:ListHyperParameterTuningJobs"),
    ("GET", "/api/v1/tuning-jobs/{name}"): _named(
        "Describe", "HyperParameterTuningJob", "hyper-parameter-tuning-job"
    ),
    ("POST", "/api/v1/tuning-jobs/{name}/stop"): _named(
        "Stop", "HyperParameterTuningJob", "hyper-parameter-tuning-job"
    ),
    ("GET", "/api/v1/endpoints"): _listed("sagemaker:ListEndpoints"),
    ("GET", "/api/v1/endpoints/{name}"): _named("Describe", "Endpoint", "endpoint"),
    ("GET", "/api/v1/endpoints/{name}/metrics"): _named("Describe", "Endpoint", "endpoint"),
    ("GET", "/api/v1/notebook-instances"): _listed("sagemaker:ListNotebookInstances"),
    ("POST", "/api/v1/notebook-instances/{name}/url"): _named(
        "CreatePresigned", "NotebookInstanceUrl", "notebook-instance"
    ),
    ("GET", "/api/v1/pipelines"): _listed("sagemaker:ListPipelines"),
    ("GET", "/api/v1/pipelines/{name}"): _named("Describe", "Pipeline", "pipeline"),
    ("GET", "/api/v1/pipelines/{name}/executions/{execution_id}"): _execution,
    ("GET", "/api/v1/model-packages"): _listed("sagemaker:ListModelPackages"),
    ("POST", "/api/v1/model-packages/{group}/{version}/approval"): _approval,
    ("GET", "/api/v1/costs"): _listed("ce:GetCostAndUsage"),
    ("GET", "/api/v1/budgets"): _budget("ViewBudget"),
    ("POST", "/api/v1/budgets"): _budget("ModifyBudget"),
    ("GET", "/api/v1/budgets/{name}"): _budget("ViewBudget"),
    ("DELETE", "/api/v1/budgets/{name}"): _budget("ModifyBudget"),
    ("GET", "/api/v1/alerts"): _budget("ViewBudget"),
}
"""Every native route (method, path as its router declares it) and what it needs; a route not
here needs ``shipyard:<Name>`` (:func:`requirement`)."""


def requirement(
    method: str, path: str, endpoint_name: str, params: Mapping[str, str], arns: _Arns
) -> Requirement | str:
    """What a call of the route ``(method, path)`` with ``params`` needs: a
    :class:`Requirement`, or :data:`EVERYONE`."""
    rule = ROUTES.get((method, path))
    if rule is None:
        return Requirement(f"shipyard:{_camel(endpoint_name)}")
    return rule(params, arns)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def caller_of(request: Request) -> Principal:
    """Who the native call acts as (api/app.py says, having checked its credentials)."""
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise HTTPException(401, "The call carries no verified credentials")
    return principal


def authorize_route(request: Request) -> None:
    """The native app's dependency on every route: AccessDenied (403) unless the caller may
    make this call."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    rule = ROUTES.get((request.method, path))
    if rule is _everyone:
        return
    principal = caller_of(request)
    if principal.is_administrator:
        return
    platform = platform_of(request)
    name = getattr(getattr(route, "endpoint", None), "__name__", "route")
    needed = requirement(request.method, path, name, request.path_params, _Arns(platform))
    if isinstance(needed, Requirement):
        check(platform, principal, needed)


def check(platform: Platform, principal: Principal, needed: Requirement) -> None:
    """Raises AccessDenied (as AWS words it) unless ``principal`` may do ``needed``."""
    if needed.reach is not None and not platform.identity.reachable(principal, [needed.reach])[needed.reach]:
        reason = f"no resource-based policy allows the {needed.action} action"  # not shared with it
        raise AccessDenied(principal.arn, needed.action, needed.resource, reason)
    decision = principal.decide(needed.action, needed.resource)
    if not decision.allowed:
        reason = f"no identity-based policy allows the {needed.action} action"
        explicit = decision is Decision.EXPLICIT_DENY
        raise AccessDenied(principal.arn, needed.action, needed.resource, reason, explicit=explicit)


# -- lists -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Listing(Generic[T]):
    """A page of a list as the caller sees it.

    Attributes:
        items: The page.
        total: How many the caller sees in all (None where the route counts them itself).
        owners: Each item's owner (by ARN): a user's name, None for the lab's.
        people: The owners the caller may filter by: every user for an administrator, else the
            owners of what it sees.
    """

    items: list[T]
    total: int | None
    owners: dict[str, str | None]
    people: list[str]

    def owner(self, arn: str) -> str | None:
        return self.owners.get(arn)


def owner_name(owner_arn: str | None) -> str | None:
    """A user's name from its ARN (``arn:aws:iam::<account>:user/<path><name>``); None: root's."""
    return owner_arn.rsplit("/", 1)[-1] if owner_arn else None


def owner_of(request: Request, arn: str) -> str | None:
    """The name of the user who owns ``arn``; None for the lab's."""
    record = platform_of(request).identity.ownership([arn]).get(arn)
    return owner_name(record.owner) if record else None


def listing(
    request: Request,
    fetch: Callable[[int, int], list[T]],
    *,
    arn_of: Callable[[T], str],
    action: str,
    offset: int,
    limit: int,
    owner: str | None = None,
) -> Listing[T]:
    """The page ``[offset, offset + limit)`` of what ``fetch(offset, limit)`` lists (in its
    order) that the caller may reach and ``action`` (``sagemaker:Describe<Noun>``) on, and,
    with ``owner``, that user's only.

    An administrator's unfiltered page is read as it is; otherwise the matches are read
    :data:`CHUNK` at a time and counted to the end (the total is what the caller sees)."""
    platform = platform_of(request)
    identity = platform.identity
    principal = caller_of(request)
    if principal.is_administrator and owner is None:
        items = fetch(offset, limit)
        records = identity.ownership([arn_of(i) for i in items])
        named = {arn: owner_name(r.owner) for arn, r in records.items()}
        return Listing(items, None, named, sorted(u.name for u in identity.users()))
    wanted = owner.lower() if owner else None
    page: list[T] = []
    owners: dict[str, str | None] = {}
    people: set[str] = set()
    total = start = 0
    while True:
        chunk = fetch(start, CHUNK)
        arns = [arn_of(i) for i in chunk]
        records = identity.ownership(arns)
        reach = identity.reachable(principal, arns)
        for item, arn in zip(chunk, arns, strict=True):
            if not reach[arn] or not principal.decide(action, arn).allowed:
                continue
            name = owner_name(records[arn].owner) if arn in records else None
            if name is not None:
                people.add(name)
            if wanted is not None and (name or "").lower() != wanted:
                continue
            if offset <= total < offset + limit:
                page.append(item)
                owners[arn] = name
            total += 1
        if len(chunk) < CHUNK:
            break
        start += CHUNK
    if principal.is_administrator:
        people = {u.name for u in identity.users()}
    return Listing(page, total, owners, sorted(people))
