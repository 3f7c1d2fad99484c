"""ORM tables. Private to the store package: repositories return core objects, never these rows.

Every change here needs a migration in ``migrations/versions`` (``alembic revision --autogenerate``
run against a database at head, then reviewed by hand).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class TagRow(Base):
    __tablename__ = "tags"

    resource_arn: Mapped[str] = mapped_column(sa.String(2048), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(256), nullable=False, default="")


class JobRow(Base):
    """A job of a kind the scheduler runs. ``request`` is the validated create request (the spec is
    rebuilt from it), ``state`` the status and transitions, ``runtime`` what the platform decided
    and observed (placement, launch, log offsets, artifacts, billing)."""

    __abstract__ = True

    name: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    arn: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False, index=True)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, index=True)
    secondary_status: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    state: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    runtime: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    last_modified: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class TrainingJobRow(JobRow):
    __tablename__ = "training_jobs"


class ProcessingJobRow(JobRow):
    __tablename__ = "processing_jobs"


class TransformJobRow(JobRow):
    __tablename__ = "transform_jobs"


class MetricPointRow(Base):
    __tablename__ = "metric_points"
    __table_args__ = (sa.Index("ix_metric_points_job_name", "job_name", "metric_name", "step"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_name: Mapped[str] = mapped_column(sa.String(63), nullable=False)
    metric_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    step: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    value: Mapped[float] = mapped_column(sa.Float, nullable=False)
    timestamp: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class TuningJobRow(Base):
    """A tuning job: the validated request, and its state (status times, trials, outcome) as JSON."""

    __tablename__ = "tuning_jobs"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    arn: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False, index=True)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, index=True)
    request: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    state: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    last_modified: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class ResourceRow(Base):
    """A resource with a request and a state, of a kind with its own names: models, endpoint
    configs, endpoints (``kind`` separates them, as SageMaker keeps a name per kind)."""

    __tablename__ = "resources"
    __table_args__ = (
        sa.Index("ix_resources_kind_created_at", "kind", "created_at"),
        sa.Index("ix_resources_kind_status", "kind", "status"),
    )

    kind: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    arn: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    status: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    state: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    last_modified: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class UsageRow(Base):
    """One interval of a priced resource in use (the cost ledger): an endpoint instance while it
    serves, say. ``key`` makes recording it idempotent; ``last_seen`` bounds an interval left open
    by a server that died (it is closed there when the next server starts)."""

    __tablename__ = "usage"
    __table_args__ = (
        sa.Index("ix_usage_resource", "resource_kind", "resource_name"),
        sa.Index("ix_usage_started", "started_at"),
        sa.Index("ix_usage_arn", "resource_arn"),
    )

    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    resource_kind: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    resource_name: Mapped[str] = mapped_column(sa.String(63), nullable=False)
    resource_arn: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    job_kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # catalog price column
    instance_type: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    instance_count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    usd_per_hour: Mapped[str] = mapped_column(sa.String(32), nullable=False)  # the price at the time
    started_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    last_seen: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    ended_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    sagemaker_usd_per_hour: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    owner: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)  # a user ARN
    parent: Mapped[str | None] = mapped_column(sa.String(63), nullable=True)
    tags: Mapped[dict[str, str] | None] = mapped_column(sa.JSON, nullable=True)
    gpus: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)  # per instance; None: not kept


class BudgetRow(Base):
    __tablename__ = "budgets"

    name: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class BudgetEventRow(Base):
    """An alert a budget raised: a threshold crossed (once a period: ``dedupe``), a launch denied,
    work stopped."""

    __tablename__ = "budget_events"
    __table_args__ = (
        sa.UniqueConstraint("dedupe", name="uq_budget_events_dedupe"),
        sa.Index("ix_budget_events_budget", "budget", "created_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    budget: Mapped[str] = mapped_column(sa.String(63), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    dedupe: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    spend_usd: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    message: Mapped[str] = mapped_column(sa.Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class UtilizationRow(Base):
    """One sample of what an instance used: CPU (the sum over cores, in %), memory and disk (% of
    what its type gives)."""

    __tablename__ = "utilization"
    __table_args__ = (sa.Index("ix_utilization_resource", "resource_kind", "resource_name", "at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    resource_kind: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    resource_name: Mapped[str] = mapped_column(sa.String(63), nullable=False)
    host: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    cpu: Mapped[float] = mapped_column(sa.Float, nullable=False)
    memory: Mapped[float] = mapped_column(sa.Float, nullable=False)
    memory_bytes: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    disk: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    gpu: Mapped[float | None] = mapped_column(sa.Float, nullable=True)  # % busy, averaged over its GPUs
    gpu_memory: Mapped[float | None] = mapped_column(sa.Float, nullable=True)  # % of their memory in use


class PipelineRow(Base):
    """A pipeline: its definition (the program) and settings; ``version`` counts its updates."""

    __tablename__ = "pipelines"

    name: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    arn: Mapped[str] = mapped_column(sa.String(512), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False, index=True)
    last_modified: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    definition: Mapped[str] = mapped_column(sa.Text, nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)


class PipelineExecutionRow(Base):
    """One run of a pipeline: the definition it runs (a copy), its parameters and its steps."""

    __tablename__ = "pipeline_executions"
    __table_args__ = (sa.Index("ix_pipeline_executions_pipeline", "pipeline", "created_at"),)

    arn: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    pipeline: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, index=True)
    last_modified: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    definition: Mapped[str] = mapped_column(sa.Text, nullable=False)
    state: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)


class ModelPackageRow(Base):
    """A model package: a version in a model package group (the model registry)."""

    __tablename__ = "model_packages"
    __table_args__ = (sa.Index("ix_model_packages_created_at", "created_at"),)

    group: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    arn: Mapped[str] = mapped_column(sa.String(512), nullable=False, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    approval: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    state: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    last_modified: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class CredentialRow(Base):
    """Session credentials issued to a job or an endpoint instance (services/credentials.py).
    ``scope`` is the policy document they are limited by; rows go when revoked or expired."""

    __tablename__ = "credentials"

    access_key_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    secret_access_key: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    session_token: Mapped[str] = mapped_column(sa.Text, nullable=False)
    owner: Mapped[str] = mapped_column(sa.String(512), nullable=False, index=True)
    principal: Mapped[str] = mapped_column(sa.String(512), nullable=False)
    scope: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False, index=True)
    user_arn: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)


class UserRow(Base):
    """An IAM user (core/identity.py). Names are unique case-insensitively (``name_key``)."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name_key: Mapped[str] = mapped_column(sa.String(64), nullable=False, unique=True)
    user_id: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    path: Mapped[str] = mapped_column(sa.String(512), nullable=False)
    admin: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class AccessKeyRow(Base):
    """A user's long-term access key. The secret is kept as it is (SigV4 needs it)."""

    __tablename__ = "access_keys"

    access_key_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    secret_access_key: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    user_name: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("users.name", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class GroupRow(Base):
    __tablename__ = "groups"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name_key: Mapped[str] = mapped_column(sa.String(64), nullable=False, unique=True)
    group_id: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    path: Mapped[str] = mapped_column(sa.String(512), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class GroupMemberRow(Base):
    __tablename__ = "group_members"

    group_name: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True
    )
    user_name: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("users.name", ondelete="CASCADE"), primary_key=True, index=True
    )


class RoleRow(Base):
    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name_key: Mapped[str] = mapped_column(sa.String(64), nullable=False, unique=True)
    role_id: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    path: Mapped[str] = mapped_column(sa.String(512), nullable=False)
    assume_role_policy: Mapped[str] = mapped_column(sa.Text, nullable=False)
    description: Mapped[str] = mapped_column(sa.String(1000), nullable=False, default="")
    max_session_duration: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=3600)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class InlinePolicyRow(Base):
    """A policy embedded in a user, group or role (``holder_kind``); the document as it was put."""

    __tablename__ = "inline_policies"

    holder_kind: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    document: Mapped[str] = mapped_column(sa.Text, nullable=False)


class OwnershipRow(Base):
    """Who created a resource (a user's ARN; NULL: root) and the group it is shared with."""

    __tablename__ = "ownership"

    resource_arn: Mapped[str] = mapped_column(sa.String(2048), primary_key=True)
    owner: Mapped[str | None] = mapped_column(sa.String(512), nullable=True, index=True)
    group_name: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class QuotaRow(Base):
    """A quota an administrator set at run time: ``subject`` is ``default``, ``user:<name>`` or
    ``group:<name>``; ``limits`` the limits by name (absent: none)."""

    __tablename__ = "quotas"

    subject: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    limits: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class ExperimentEntityRow(Base):
    """An experiment, trial or trial component (``kind``: its ARN resource type), under its
    lower-cased name (``key``: SageMaker's names are unique without regard to case).
    ``document`` is what SageMaker answers besides names and times; ``metrics`` a trial
    component's metric summaries."""

    __tablename__ = "experiment_entities"
    __table_args__ = (sa.Index("ix_experiment_entities_kind_created_at", "kind", "created_at"),)

    kind: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    arn: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    last_modified: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    created_by: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)
    document: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)


class ExperimentLinkRow(Base):
    """An edge between experiment entities: ``experiment-trial`` (an experiment's trial) and
    ``trial-component`` (a trial's component, a job's too), by their keys."""

    __tablename__ = "experiment_links"
    __table_args__ = (sa.Index("ix_experiment_links_kind_destination", "kind", "destination"),)

    kind: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    destination: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class ExperimentMetricPointRow(Base):
    """One value a trial component logged through BatchPutMetrics (migration 0017), by the
    component's key: the series BatchGetMetrics answers (the summaries stay on the entity)."""

    __tablename__ = "experiment_metric_points"
    __table_args__ = (
        sa.Index("ix_experiment_metric_points_component", "component", "metric_name", "timestamp"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    component: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    metric_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    step: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    value: Mapped[float] = mapped_column(sa.Float, nullable=False)
    timestamp: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class NotebookInstanceRow(Base):
    """A notebook instance (migration 0016): its request with updates applied, its status, and
    when its current run entered service (idleness counts from there)."""

    __tablename__ = "notebook_instances"
    __table_args__ = (sa.Index("ix_notebook_instances_created_at", "created_at"),)

    name: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    arn: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    region: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    failure_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    owner: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)
    url: Mapped[str | None] = mapped_column(sa.String(256), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    last_modified: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    in_service_since: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
