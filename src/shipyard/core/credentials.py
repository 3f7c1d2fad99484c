"""Session credentials, and what a job's own credentials allow (pure).

As SageMaker hands each job its role's temporary credentials, Shipyard gives every job attempt its
own :class:`SessionCredentials`: an ``ASIA...`` access key, a secret, a session token and an
expiration, owned by the job's ARN and limited by a scope policy. :func:`job_scope` builds that
policy from the job's request: what it reads (input channels, code, model data), what it writes
(its output folder, processing outputs, transform output, checkpoints), its logs and metrics, and
the SageMaker calls a pipeline step or a job that launches jobs makes. A :class:`Principal` is who
a request acts as: the administrator (the server's master key), or a session.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shipyard.core.policy import (
    ADMINISTRATOR,
    NOTHING,
    Condition,
    Decision,
    Policy,
    Statement,
    allow,
    evaluate,
)

SESSION_KEY_PREFIX = "ASIA"
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"

# What reading and writing an S3 prefix take (IAM's action names: HeadObject is s3:GetObject,
# every step of a multipart upload s3:PutObject).
READ_ACTIONS = ("s3:GetObject",)
WRITE_ACTIONS = (
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
BUCKET_ACTIONS = ("s3:GetBucketLocation",)
# The SageMaker calls a job's own code may make: launch and follow jobs (a pipeline @step, a job
# that launches jobs) and read pipelines. Not Stop, Delete or Update of anything, and nothing of
# endpoints, models or pipelines beyond reading: which jobs a job may stop (those it launched)
# needs resource conditions, which issue 22 brings.
SAGEMAKER_JOB_ACTIONS = (
    "sagemaker:CreateTrainingJob",
    "sagemaker:DescribeTrainingJob",
    "sagemaker:CreateProcessingJob",
    "sagemaker:DescribeProcessingJob",
    "sagemaker:CreateTransformJob",
    "sagemaker:DescribeTransformJob",
    "sagemaker:CreateHyperParameterTuningJob",
    "sagemaker:DescribeHyperParameterTuningJob",
    "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
)
SAGEMAKER_LIST_ACTIONS = (
    "sagemaker:ListTrainingJobs",
    "sagemaker:ListProcessingJobs",
    "sagemaker:ListTransformJobs",
    "sagemaker:ListHyperParameterTuningJobs",
)
SAGEMAKER_READ_ACTIONS = (
    "sagemaker:DescribeModel",
    "sagemaker:DescribePipeline",
    "sagemaker:DescribePipelineExecution",
    "sagemaker:ListPipelineExecutionSteps",
)
# What ``load_run()`` in a job calls: the run's experiment, trial and trial component, found or
# made, its parameters and metrics written; ownership still decides whose it may touch.
SAGEMAKER_EXPERIMENT_ACTIONS = (
    *(
        f"sagemaker:{verb}{noun}"
        for noun in ("Experiment", "Trial", "TrialComponent")
        for verb in ("Create", "Describe", "Update")
    ),
    "sagemaker:ListExperiments",
    "sagemaker:ListTrials",
    "sagemaker:ListTrialComponents",
    "sagemaker:AssociateTrialComponent",
    "sagemaker:BatchPutMetrics",
    "sagemaker:CreateArtifact",
    "sagemaker:DescribeArtifact",
    "sagemaker:ListArtifacts",
    "sagemaker:AddAssociation",
    "sagemaker:ListAssociations",
    "sagemaker:Search",
)
_JOB_RESOURCES = ("training-job", "processing-job", "transform-job", "hyper-parameter-tuning-job")
LOGS_ACTIONS = ("logs:*",)
METRICS_ACTIONS = ("cloudwatch:PutMetricData",)
# A job's session may always ask who it is.
ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})


@dataclasses.dataclass(frozen=True)
class SessionCredentials:
    """Temporary credentials, as STS issues them.

    Attributes:
        access_key_id: ``ASIA`` and 16 upper-case letters and digits.
        secret_access_key: 40 characters.
        session_token: Sent by the client as ``X-Amz-Security-Token``.
        expiration: When they stop working.
        owner: The ARN of what they were issued for (a job, an endpoint).
        principal: Who they act as: ``arn:aws:sts::<account>:assumed-role/<role>/<session>``.
        scope: What they allow.
        user: The ARN of the user whose job they were issued for (None: root's, or no user).
    """

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: dt.datetime
    owner: str
    principal: str
    scope: Policy
    user: str | None = None

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.expiration

    def __repr__(self) -> str:  # never the secret or the token in a log line or a traceback
        return f"SessionCredentials({self.access_key_id}, owner={self.owner!r}, expiration={self.expiration})"


def new_session(
    owner: str, principal: str, scope: Policy, expiration: dt.datetime, user: str | None = None
) -> SessionCredentials:
    """Fresh random credentials (the secrets module) for ``owner``."""
    return SessionCredentials(
        access_key_id=SESSION_KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16)),
        secret_access_key="".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40)),
        session_token=secrets.token_urlsafe(96),
        expiration=expiration,
        owner=owner,
        principal=principal,
        scope=scope,
        user=user,
    )


def is_session_key(access_key_id: str) -> bool:
    """Whether an access key id has the form of a session key (``ASIA`` + 16)."""
    return (
        len(access_key_id) == 20
        and access_key_id.startswith(SESSION_KEY_PREFIX)
        and all(c in _KEY_ALPHABET for c in access_key_id)
    )


def assumed_role_arn(account: str, role_arn: str | None, session_name: str) -> str:
    """The ARN a session acts as: ``arn:aws:sts::<account>:assumed-role/<role name>/<session>``
    (the role's name is the last part of its ARN; ``ShipyardExecutionRole`` without one)."""
    role = (role_arn or "").rsplit("/", 1)[-1] if role_arn and "/" in role_arn else "ShipyardExecutionRole"
    return f"arn:aws:sts::{account}:assumed-role/{role}/{session_name}"


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a request acts as.

    Attributes:
        arn: As GetCallerIdentity answers it (root, a user, or a session's assumed role).
        policies: The identity policies that decide what it may do (a user's and its groups',
            a session's role's).
        session: The session credentials it signed with (None: root or a user's key).
        boundary: Policies that must *also* allow each action (a session's scope: what its job
            needs), as AWS intersects a session policy with the role's.
        administrator: Root, or a user made an administrator: everything allowed.
        user: The ARN of the user it acts for, who owns what it creates (a session's: the user
            who launched the job); None for root.
        groups: The groups of that user (what is shared with them is theirs to reach too).
    """

    arn: str
    policies: tuple[Policy, ...]
    session: SessionCredentials | None = None
    boundary: tuple[Policy, ...] = ()
    administrator: bool = False
    user: str | None = None
    groups: tuple[str, ...] = ()

    @classmethod
    def root(cls, account: str) -> Principal:
        """The account's root (the server's own key pair)."""
        return cls(f"arn:aws:iam::{account}:root", (ADMINISTRATOR,), administrator=True)

    @classmethod
    def of_session(
        cls,
        session: SessionCredentials,
        role_policies: Sequence[Policy] | None = None,
        groups: Sequence[str] = (),
    ) -> Principal:
        """A session: its role's policies (None: no such role is recorded, which grants
        everything, as on a server without users) bounded by its scope."""
        policies = (ADMINISTRATOR,) if role_policies is None else tuple(role_policies)
        return cls(
            session.principal, policies, session, (session.scope,), user=session.user, groups=tuple(groups)
        )

    @property
    def is_administrator(self) -> bool:
        return self.administrator

    def decide(self, action: str, resource: str, context: Mapping[str, str] | None = None) -> Decision:
        if self.administrator or action in ALWAYS_ALLOWED:
            return Decision.ALLOW
        decision = evaluate(self.policies, action, resource, context)
        if not decision.allowed or not self.boundary:
            return decision
        return evaluate(self.boundary, action, resource, context)


# -- a job's scope ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class S3Grant:
    """Access to S3 objects: ``key`` exactly, or every key starting with it (``prefix``);
    ``write`` also allows writing and deleting them."""

    bucket: str
    key: str
    prefix: bool = True
    write: bool = False

    @property
    def resource(self) -> str:
        return f"arn:aws:s3:::{self.bucket}/{self.key}{'*' if self.prefix else ''}"

    @property
    def actions(self) -> tuple[str, ...]:
        return WRITE_ACTIONS if self.write else READ_ACTIONS


def s3_grants(
    kind: str, request: Mapping[str, Any], *, model: Mapping[str, Any] | None = None
) -> list[S3Grant]:
    """What a job of ``kind`` (training, processing, transform, tuning) reads and writes in S3, from
    its validated Create request; a transform job's ``model`` as it records it (its
    ``model_data_url`` and ``environment``). A tuning job's are those of its trials."""
    grants: list[S3Grant] = []
    if kind == "training":
        grants += _training_grants(request, str(request.get("TrainingJobName", "")))
    elif kind == "tuning":
        definitions = request.get("TrainingJobDefinitions") or [request.get("TrainingJobDefinition") or {}]
        for definition in definitions:
            grants += _training_grants(definition, None)
    elif kind == "processing":
        for raw in request.get("ProcessingInputs") or ():
            s3 = raw.get("S3Input") or {}
            manifest = s3.get("S3DataType") == "ManifestFile"
            grants += _uri(s3.get("S3Uri"), prefix=not manifest)
        for raw in (request.get("ProcessingOutputConfig") or {}).get("Outputs") or ():
            grants += _uri((raw.get("S3Output") or {}).get("S3Uri"), folder=True, write=True)
    elif kind == "transform":
        source = ((request.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource") or {}
        grants += _uri(source.get("S3Uri"), prefix=source.get("S3DataType") != "ManifestFile")
        grants += _uri((request.get("TransformOutput") or {}).get("S3OutputPath"), folder=True, write=True)
        grants += model_grants(model or {})
    return grants


def model_grants(model: Mapping[str, Any]) -> list[S3Grant]:
    """Reading a model's data and its code (``SAGEMAKER_SUBMIT_DIRECTORY``), from a container's
    ``model_data_url`` (or ``ModelDataUrl``) and ``environment`` (or ``Environment``)."""
    environment = model.get("environment") or model.get("Environment") or {}
    return [
        *_uri(model.get("model_data_url") or model.get("ModelDataUrl"), prefix=False),
        *_uri(environment.get("SAGEMAKER_SUBMIT_DIRECTORY"), prefix=False),
    ]


def _training_grants(request: Mapping[str, Any], name: str | None) -> list[S3Grant]:
    grants: list[S3Grant] = []
    for channel in request.get("InputDataConfig") or ():
        grants += _uri(((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri"))
    hyperparameters = request.get("HyperParameters") or request.get("StaticHyperParameters") or {}
    code = _decoded(hyperparameters.get("sagemaker_submit_directory"))
    grants += _uri(code, prefix=not code.endswith(".tar.gz")) if code else []
    output = str((request.get("OutputDataConfig") or {}).get("S3OutputPath") or "").rstrip("/")
    if output:  # SageMaker writes everything of a job under <S3OutputPath>/<job name>/
        grants += _uri(f"{output}/{name}" if name else output, folder=True, write=True)
    grants += _uri((request.get("CheckpointConfig") or {}).get("S3Uri"), folder=True, write=True)
    # A sagemaker SDK remote function (@remote, a pipeline's @step): its job driver reads the
    # pickled call from, and writes the result (read by later steps) under, --s3_base_uri.
    arguments = list((request.get("AlgorithmSpecification") or {}).get("ContainerArguments") or ())
    if "--s3_base_uri" in arguments[:-1]:
        grants += _uri(arguments[arguments.index("--s3_base_uri") + 1], folder=True, write=True)
    return grants


def _uri(uri: Any, *, prefix: bool = True, folder: bool = False, write: bool = False) -> list[S3Grant]:
    """The grant for an ``s3://`` URI (none for anything else). ``folder``: the keys under it as
    a folder (``key/...``), not every key that starts with its characters."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return []
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        return []
    if folder and key and not key.endswith("/"):
        key += "/"
    return [S3Grant(bucket, key, prefix=prefix or folder, write=write)]


def _decoded(value: Any) -> str:
    """A hyperparameter as the SageMaker SDK JSON-encodes it (``"\\"s3://...\\""``), decoded."""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def grants_policy(grants: Iterable[S3Grant]) -> list[Statement]:
    """The statements that allow ``grants``: the objects, the bucket's location, and listing
    each bucket under the granted keys only (``s3:prefix``)."""
    grants = list(grants)
    statements = []
    by_actions: dict[tuple[str, ...], list[str]] = {}
    for grant in grants:
        resources = by_actions.setdefault(grant.actions, [])
        if grant.resource not in resources:
            resources.append(grant.resource)
    for index, (actions, resources) in enumerate(sorted(by_actions.items())):
        statements.append(allow(actions, resources, sid=f"Objects{index + 1}"))
    buckets: dict[str, list[str]] = {}
    for grant in grants:
        prefixes = buckets.setdefault(grant.bucket, [])
        pattern = grant.key + ("*" if grant.prefix else "")
        if pattern not in prefixes:
            prefixes.append(pattern)
    for index, (bucket, prefixes) in enumerate(sorted(buckets.items())):
        statements.append(
            allow(
                ["s3:ListBucket"],
                [f"arn:aws:s3:::{bucket}"],
                sid=f"List{index + 1}",
                conditions=[Condition("StringLike", "s3:prefix", tuple(prefixes))],
            )
        )
    if buckets:
        statements.append(
            allow(BUCKET_ACTIONS, [f"arn:aws:s3:::{b}" for b in sorted(buckets)], sid="BucketLocation")
        )
    return statements


def job_scope(
    kind: str,
    request: Mapping[str, Any],
    *,
    account: str,
    model: Mapping[str, Any] | None = None,
) -> Policy:
    """What a job's own credentials allow: its S3 reads and writes (:func:`s3_grants`), its
    logs and metrics, reading and passing its own role (the SDK's ``get_execution_role``; the
    jobs it launches with it), and the SageMaker calls of a job that launches jobs
    (``SAGEMAKER_JOB_ACTIONS``)."""
    jobs = [f"arn:aws:sagemaker:*:{account}:{noun}/*" for noun in _JOB_RESOURCES]
    statements = [
        *grants_policy(s3_grants(kind, request, model=model)),
        allow(LOGS_ACTIONS, [f"arn:aws:logs:*:{account}:log-group:/aws/sagemaker/*"], sid="Logs"),
        allow(METRICS_ACTIONS, ["*"], sid="Metrics"),
        allow(SAGEMAKER_JOB_ACTIONS, jobs, sid="Jobs"),
        allow(SAGEMAKER_LIST_ACTIONS, ["*"], sid="ListJobs"),
        allow(SAGEMAKER_EXPERIMENT_ACTIONS, ["*"], sid="Experiments"),
        allow(
            SAGEMAKER_READ_ACTIONS,
            [
                f"arn:aws:sagemaker:*:{account}:model/*",
                f"arn:aws:sagemaker:*:{account}:pipeline/*",
            ],
            sid="ReadModelsAndPipelines",
        ),
    ]
    role = request.get("RoleArn") or (model or {}).get("role_arn")  # a transform job: its model's
    if isinstance(role, str) and role.startswith("arn:") and ":role/" in role:
        # Its own role: to read it (get_execution_role), and to pass it to the jobs it launches.
        # GetRole names a role without its path; either form is allowed.
        plain = f"arn:aws:iam::{account}:role/{role.rsplit('/', 1)[-1]}"
        statements.append(allow(["iam:GetRole", "iam:PassRole"], sorted({role, plain}), sid="OwnRole"))
    return Policy(tuple(statements))


def model_scope(container: Mapping[str, Any]) -> Policy:
    """What an endpoint instance's host needs: reading its model's data and code."""
    grants = model_grants(container)
    return Policy(tuple(grants_policy(grants))) if grants else NOTHING


def unreachable(principal: Principal, grants: Sequence[S3Grant]) -> list[tuple[str, str]]:
    """The (action, resource) pairs of ``grants`` that ``principal`` may not do itself: a job may
    launch a job only with data it could reach itself. A prefix grant is tested on a key under
    it that only a wildcard covers, so a narrower permission does not pass for a wider one."""
    missing = []
    for grant in grants:
        key = grant.key + ("\x00" if grant.prefix else "")
        resource = f"arn:aws:s3:::{grant.bucket}/{key}"
        for action in grant.actions:
            if not principal.decide(action, resource).allowed:
                missing.append((action, grant.resource))
        listing = {"s3:prefix": key}
        if (
            grant.prefix
            and not principal.decide("s3:ListBucket", f"arn:aws:s3:::{grant.bucket}", listing).allowed
        ):
            missing.append(("s3:ListBucket", f"arn:aws:s3:::{grant.bucket} (prefix {grant.key!r})"))
    return missing


def job_lifetime(max_runtime_seconds: int | None, margin: dt.timedelta) -> dt.timedelta:
    """How long a job's credentials last: its MaxRuntimeInSeconds (a day without one) plus
    ``margin`` (downloads, environment builds and uploads happen outside the runtime)."""
    return dt.timedelta(seconds=max_runtime_seconds or 86_400) + margin
