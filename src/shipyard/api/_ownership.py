"""Ownership on the AWS APIs: a user reaches its own resources, those shared with its groups and
the lab's, and no other user's.

:func:`~shipyard.api._access.authorize` asks :func:`ownership_refusal` once the caller's
policies allow a request. Every resource the request names by ARN must be reachable
(core.identity.may_reach): a SageMaker resource (and those a create refers to: the model of a
transform job or an endpoint config, the config of an endpoint, the group of a model package, the
parents of a warm start), an S3 object's bucket, the endpoint InvokeEndpoint calls, the job (or
endpoint) a log stream belongs to, and the buckets a job about to be launched would read or
write. Setting or removing the share tag (core.identity.SHARE_TAG) takes the resource's owner
(or an administrator). The refusal is AWS's AccessDenied naming the action and the resource. A
resource that does not exist has no record and is answered as before (not found); a create whose
name is taken is left to the create, which answers ResourceInUse as SageMaker does (S3:
BucketAlreadyExists), saying no more.

Root, administrators and root's jobs' sessions (acting for no user: their scope bounds them) are
not asked; a user's request costs one lookup of the records it names, none when they are kept
(IdentityService.owners_cached). :func:`reach_needed` is pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool

from shipyard.core.arn import sagemaker_arn
from shipyard.core.credentials import Principal, S3Grant
from shipyard.core.experiments import ownership_arn
from shipyard.core.identity import SHARE_TAG, Ownership
from shipyard.errors import AccessDenied
from shipyard.services import Platform
from shipyard.services.identity import reaches

# The SageMaker operations that create the resource their request names: left to the create.
CREATES = frozenset(
    {
        "CreateTrainingJob",
        "CreateProcessingJob",
        "CreateTransformJob",
        "CreateHyperParameterTuningJob",
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "CreatePipeline",
        "CreateModelPackageGroup",
        "CreateModelPackage",
        "CreateExperiment",
        "CreateTrial",
        "CreateTrialComponent",
        "CreateArtifact",
        "CreateContext",
        "CreateAction",
        "CreateNotebookInstance",
        "CreateInferenceComponent",
    }
)
# The log groups of jobs, by the resource type of the job a stream (``<job>/<instance>``) is of.
JOB_LOG_GROUPS = {
    "/aws/sagemaker/TrainingJobs": "training-job",
    "/aws/sagemaker/ProcessingJobs": "processing-job",
    "/aws/sagemaker/TransformJobs": "transform-job",
}
_ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/"
_COMPONENT_LOG_GROUP = "/aws/sagemaker/InferenceComponents/"
_SHARE_REASON = f"only the owner of a resource (or an administrator) may set or remove its {SHARE_TAG} tag"


@dataclasses.dataclass(frozen=True)
class Reach:
    """A resource the caller must reach: ``arn``, whose ownership record decides, for
    ``action`` on ``resource`` (as a refusal names them)."""

    action: str
    resource: str
    arn: str


def reach_needed(
    needed: Iterable[Any],
    *,
    protocol: str,
    target: str,
    params: Mapping[str, Any],
    region: str,
    account: str,
) -> list[Reach]:
    """What a request must reach, from the permissions it needs (``RequestedAction``s: their
    ``action`` and ``resource``) and its JSON ``params``."""
    prefix, _, operation = target.partition(".")
    found: list[Reach] = []
    for item in needed:
        arn = _owned_arn(item.action, item.resource, operation if prefix == "SageMaker" else "")
        if arn is not None:
            found.append(Reach(item.action, item.resource, arn))
    if protocol == "json" and prefix == "SageMaker":
        action = f"sagemaker:{operation}"
        found += [Reach(action, arn, arn) for arn in _referenced(operation, params, region, account)]
    elif protocol == "json" and prefix.startswith("Logs"):
        items = list(needed)
        if items:
            first = items[0]
            found += [
                Reach(first.action, first.resource, arn) for arn in _log_owners(params, region, account)
            ]
    return found


def _owned_arn(action: str, resource: str, operation: str) -> str | None:
    """The ARN whose record decides whether ``action`` on ``resource`` is reached; None where
    no record does (wildcards, a create's own name, what is not a resource of Shipyard's)."""
    if resource.startswith("arn:aws:s3:::"):
        bucket = resource[len("arn:aws:s3:::") :].split("/", 1)[0]
        if action == "s3:CreateBucket" or not bucket or "*" in bucket:
            return None
        return f"arn:aws:s3:::{bucket}"
    parts = resource.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == "sagemaker" and "*" not in parts[5]:
        if operation in CREATES and action == f"sagemaker:{operation}":
            return None
        return ownership_arn(resource)  # a job's trial component is reached through its job
    return None


def _referenced(operation: str, params: Mapping[str, Any], region: str, account: str) -> list[str]:
    """The ARNs of the resources a SageMaker request uses besides the one it names."""

    def arn(kind: str, name: Any) -> list[str]:
        if not isinstance(name, str) or not name:
            return []
        return [name if name.startswith("arn:") else sagemaker_arn(region, account, kind, name)]

    if operation in ("CreateTrainingJob", "CreateProcessingJob", "CreateTransformJob"):
        config = params.get("ExperimentConfig")
        if isinstance(config, Mapping):  # the experiment, trial and run it joins
            found = arn("experiment", config.get("ExperimentName"))
            found += arn("experiment-trial", config.get("TrialName"))
            found += [ownership_arn(a) for a in arn("experiment-trial-component", config.get("RunName"))]
            if operation == "CreateTransformJob":
                found += arn("model", params.get("ModelName"))
            return found
    if operation == "CreateTrial":
        return arn("experiment", params.get("ExperimentName"))
    if operation in ("AddAssociation", "DeleteAssociation"):  # both ends (a job's component: its job)
        ends = [params.get("SourceArn"), params.get("DestinationArn")]
        return [ownership_arn(e) for e in ends if isinstance(e, str) and e.startswith("arn:")]
    if operation == "QueryLineage":  # where it starts (its lineage is filtered as it is read)
        starts = params.get("StartArns") or ()
        return [ownership_arn(a.lower()) for a in starts if isinstance(a, str) and a.startswith("arn:")]
    if operation in ("AssociateTrialComponent", "DisassociateTrialComponent"):
        return arn("experiment-trial", params.get("TrialName"))
    if operation in ("CreateInferenceComponent", "UpdateInferenceComponent"):  # its endpoint, its model
        specification = params.get("Specification")
        model = specification.get("ModelName") if isinstance(specification, Mapping) else None
        return arn("endpoint", params.get("EndpointName")) + arn("model", model)
    if operation in ("CreateEndpoint", "UpdateEndpoint"):
        return arn("endpoint-config", params.get("EndpointConfigName"))
    if operation == "CreateTransformJob":
        return arn("model", params.get("ModelName"))
    if operation == "CreateEndpointConfig":
        variants = [
            *(params.get("ProductionVariants") or ()),
            *(params.get("ShadowProductionVariants") or ()),
        ]
        return [a for v in variants if isinstance(v, Mapping) for a in arn("model", v.get("ModelName"))]
    if operation == "CreateModelPackage":
        return arn("model-package-group", params.get("ModelPackageGroupName"))
    if operation == "CreateModel":  # the registered versions its containers are made from
        containers = [params.get("PrimaryContainer"), *(params.get("Containers") or ())]
        return [
            a
            for c in containers
            if isinstance(c, Mapping)
            for a in arn("model-package", c.get("ModelPackageName"))
        ]
    if operation == "CreateHyperParameterTuningJob":
        parents = (params.get("WarmStartConfig") or {}).get("ParentHyperParameterTuningJobs") or ()
        return [
            a
            for p in parents
            if isinstance(p, Mapping)
            for a in arn("hyper-parameter-tuning-job", p.get("HyperParameterTuningJobName"))
        ]
    return []


def _log_owners(params: Mapping[str, Any], region: str, account: str) -> list[str]:
    """The jobs (or endpoint) whose log streams a CloudWatch Logs request names: a stream, its
    streams, or a prefix naming a job (``<job>/``); a listing of a job log group without one
    is filtered stream by stream (api/logs)."""
    group = params.get("logGroupName") or params.get("logGroupIdentifier")
    if not isinstance(group, str):
        return []
    if group.startswith("arn:"):
        group = group.partition(":log-group:")[2].removesuffix(":*")
    if group.startswith(_ENDPOINT_LOG_GROUP):
        endpoint = group.removeprefix(_ENDPOINT_LOG_GROUP)
        return [sagemaker_arn(region, account, "endpoint", endpoint)] if endpoint else []
    if group.startswith(_COMPONENT_LOG_GROUP):
        component = group.removeprefix(_COMPONENT_LOG_GROUP)
        return [sagemaker_arn(region, account, "inference-component", component)] if component else []
    kind = JOB_LOG_GROUPS.get(group)
    if kind is None:
        return []
    streams = [params.get("logStreamName"), *(params.get("logStreamNames") or ())]
    prefix = params.get("logStreamNamePrefix")
    if isinstance(prefix, str) and "/" in prefix:
        streams.append(prefix)
    jobs = {s.split("/", 1)[0] for s in streams if isinstance(s, str) and s.split("/", 1)[0]}
    return [sagemaker_arn(region, account, kind, job) for job in sorted(jobs)]


def share_change(target: str, params: Mapping[str, Any]) -> Reach | None:
    """The resource whose share tag a SageMaker AddTags or DeleteTags would set or remove."""
    operation = target.partition(".")[2] if target.startswith("SageMaker.") else ""
    resource = params.get("ResourceArn")
    if not isinstance(resource, str):
        return None
    if operation == "AddTags":
        tags = params.get("Tags") or ()
        if any(isinstance(t, Mapping) and t.get("Key") == SHARE_TAG for t in tags):
            return Reach("sagemaker:AddTags", resource, resource)
    if operation == "DeleteTags" and SHARE_TAG in (params.get("TagKeys") or ()):
        return Reach("sagemaker:DeleteTags", resource, resource)
    return None


def may_share(principal: Principal, record: Ownership | None) -> bool:
    """Whether ``principal`` may set or remove a resource's share tag: its owner, or an
    administrator (root's jobs may on the lab's, as root's are the lab's)."""
    if principal.is_administrator:
        return True
    owner = record.owner if record is not None else None
    return owner == principal.user


async def ownership_refusal(
    principal: Principal,
    needed: Sequence[Any],
    *,
    protocol: str,
    target: str,
    params: Mapping[str, Any],
    grants: Sequence[S3Grant],
    region: str,
    platform: Platform,
) -> AccessDenied | None:
    """Why a user may not make the request (None: it may): a resource it names is another
    user's, and not shared with the user's groups."""
    if principal.is_administrator or principal.user is None:
        return None
    reach = reach_needed(
        needed,
        protocol=protocol,
        target=target,
        params=params,
        region=region,
        account=platform.settings.account_id,
    )
    share = share_change(target, params) if protocol == "json" else None
    buckets = {f"arn:aws:s3:::{g.bucket}": g for g in grants}
    arns = {r.arn for r in reach} | set(buckets) | ({share.arn} if share else set())
    if not arns:
        return None
    identity = platform.identity
    owners = identity.owners_cached(arns)
    if owners is None:
        owners = await run_in_threadpool(identity.owners, arns)
    for item in reach:
        if not reaches(principal, owners[item.arn]):
            reason = f"no resource-based policy allows the {item.action} action"  # not shared with it
            return AccessDenied(principal.arn, item.action, item.resource, reason)
    if share is not None and not may_share(principal, owners[share.arn]):
        return AccessDenied(principal.arn, share.action, share.resource, _SHARE_REASON)
    for arn, grant in buckets.items():
        if not reaches(principal, owners[arn]):
            operation = target.partition(".")[2]
            resource = next((n.resource for n in needed), "*")
            reason = f"the job it would launch reads or writes {grant.resource}, which it may not reach"
            return AccessDenied(principal.arn, f"sagemaker:{operation}", resource, reason)
    return None
