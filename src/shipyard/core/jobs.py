"""Jobs the scheduler runs, of every kind: :class:`Job` (spec, state, run record), :class:`JobState`
with its transitions, and :class:`JobRun`, what the platform decided and observed while running it.

Every kind of job the scheduler runs (training, processing, transform) carries one
:class:`JobRun` beside its spec and state: what was fixed at creation (region, owner, the
environment, a tuning parent, a transform's model), the current attempt (backend, placement, the
launched instances), how far the scheduler has read what the instances wrote (log and utilization
offsets, phases, metric steps), and the end (artifacts, billing, final metrics, exit codes). It is
frozen, changed with :meth:`JobRun.replace`, and stored as one JSON object whose keys are the
field names (the store's ``runtime`` column), so rows written by earlier versions read unchanged.

Modelled on optuna's ``FrozenTrial``: typed fields, plus one open bag, :attr:`JobRun.extra`,
which keeps keys this version does not know (written by a newer server) so that nothing is lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from shipyard.core.placement import Resources
from shipyard.core.training import MetricDefinition, SecondaryStatus, TrainingJobSpec, TrainingJobStatus


@dataclasses.dataclass(frozen=True)
class InstanceRecord:
    """One launched instance of the current attempt.

    Attributes:
        host: ``algo-N``.
        dir: The instance folder on the server (the agent's own, or the server's copy of it).
        handle: The backend's handle (JSON-able, kept across restarts).
        stream: The CloudWatch log stream name, ``<job>/<host>-<launch epoch s>``.
        launched_at: When it was launched, epoch milliseconds.
    """

    host: str
    dir: str
    handle: Mapping[str, Any]
    stream: str
    launched_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "dir": self.dir,
            "handle": dict(self.handle),
            "stream": self.stream,
            "launched_at": self.launched_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstanceRecord:
        return cls(
            host=str(data["host"]),
            dir=str(data["dir"]),
            handle=dict(data.get("handle") or {}),
            stream=str(data.get("stream", "")),
            launched_at=int(data.get("launched_at", 0)),
        )


@dataclasses.dataclass(frozen=True)
class Billing:
    """What a finished job was billed: seconds by the second (at least one), and the price
    (the site's, per instance-hour; ``billed_as``: the type it was charged as when it was scaled
    down to fit, see core/pricing.py)."""

    training_seconds: int
    billable_seconds: int
    cost_usd: Decimal
    sagemaker_cost_usd: Decimal
    price_per_hour_usd: Decimal
    billed_as: str | None = None


@dataclasses.dataclass(frozen=True)
class JobRun:
    """What the platform decided and observed while running a job. See the module docstring."""

    # Fixed when the job is created.
    region: str = "us-east-1"
    owner: str | None = None
    environment: Mapping[str, Any] | None = None  # the EnvironmentSpec's JSON
    tuning_job: str | None = None
    tuning_job_arn: str | None = None
    model: Mapping[str, Any] | None = None  # a transform job's model, as it was at its creation
    # The current attempt (0 first; a lost instance may start another).
    attempt: int = 0
    preemptions: int = 0  # of the attempts, how many were preempted (not counted as retries)
    backend: str = "local"
    instances: tuple[InstanceRecord, ...] = ()
    placement: Resources | None = None  # what each instance was granted
    stop_signalled: bool = False
    # How far the scheduler has read what the instances wrote.
    phases_seen: int = 0
    metric_offset: int = 0
    metric_steps: Mapping[str, int] = dataclasses.field(default_factory=dict)
    utilization_offsets: Mapping[str, int] = dataclasses.field(default_factory=dict)
    ledger: str | None = None  # the cost ledger's key of the attempt whose interval is open
    # The end.
    model_artifacts: str | None = None
    output_artifacts: str | None = None
    billing: Billing | None = None
    final_metrics: tuple[Mapping[str, Any], ...] = ()  # DescribeTrainingJob's FinalMetricDataList
    exit_codes: tuple[int | None, ...] = ()
    # Keys this version does not know, kept as they were.
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def launched(self) -> bool:
        """Whether the current attempt's instances were launched (else the job waits to be placed)."""
        return bool(self.instances)

    def replace(self, **changes: Any) -> JobRun:
        return dataclasses.replace(self, **changes)

    def next_attempt(self) -> JobRun:
        """The record for another attempt after a lost instance: what the last attempt launched
        and how far its log was read are dropped; what was observed of the job is kept."""
        return dataclasses.replace(
            self,
            attempt=self.attempt + 1,
            instances=(),
            placement=None,
            stop_signalled=False,
            phases_seen=0,
            metric_offset=0,
        )

    # -- JSON (the store's runtime column) --------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        data.update(
            region=self.region,
            attempt=self.attempt,
            metric_offset=self.metric_offset,
            phases_seen=self.phases_seen,
        )
        optional: dict[str, Any] = {
            "owner": self.owner,
            "environment": dict(self.environment) if self.environment is not None else None,
            "tuning_job": self.tuning_job,
            "tuning_job_arn": self.tuning_job_arn,
            "model": dict(self.model) if self.model is not None else None,
            "ledger": self.ledger,
            "model_artifacts": self.model_artifacts,
            "output_artifacts": self.output_artifacts,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        if self.instances:
            data["backend"] = self.backend
            data["instances"] = [i.to_json() for i in self.instances]
        if self.placement is not None:
            data["placement"] = dataclasses.asdict(self.placement)
        if self.stop_signalled:
            data["stop_signalled"] = True
        if self.preemptions:
            data["preemptions"] = self.preemptions
        if self.metric_steps:
            data["metric_steps"] = dict(self.metric_steps)
        if self.utilization_offsets:
            data["utilization_offsets"] = dict(self.utilization_offsets)
        if self.billing is not None:
            b = self.billing
            data.update(
                training_seconds=b.training_seconds,
                billable_seconds=b.billable_seconds,
                cost_usd=str(b.cost_usd),
                sagemaker_cost_usd=str(b.sagemaker_cost_usd),
                price_per_hour_usd=str(b.price_per_hour_usd),
            )
            if b.billed_as is not None:
                data["billed_as"] = b.billed_as
        if self.final_metrics:
            data["final_metrics"] = [dict(m) for m in self.final_metrics]
        if self.exit_codes:
            data["exit_codes"] = list(self.exit_codes)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRun:
        known = {f.name for f in dataclasses.fields(cls)} | _BILLING_KEYS
        billing = None
        if data.get("billable_seconds") is not None and data.get("cost_usd") is not None:
            cost = Decimal(str(data["cost_usd"]))
            billing = Billing(
                training_seconds=int(data.get("training_seconds") or 0),
                billable_seconds=int(data["billable_seconds"]),
                cost_usd=cost,
                sagemaker_cost_usd=Decimal(str(data.get("sagemaker_cost_usd") or cost)),
                price_per_hour_usd=Decimal(str(data.get("price_per_hour_usd") or 0)),
                billed_as=data.get("billed_as"),
            )
        placement = data.get("placement")
        return cls(
            region=str(data.get("region") or "us-east-1"),
            owner=data.get("owner"),
            environment=data.get("environment"),
            tuning_job=data.get("tuning_job"),
            tuning_job_arn=data.get("tuning_job_arn"),
            model=data.get("model"),
            attempt=int(data.get("attempt") or 0),
            preemptions=int(data.get("preemptions") or 0),
            backend=str(data.get("backend") or "local"),
            instances=tuple(InstanceRecord.from_json(i) for i in data.get("instances") or ()),
            placement=Resources(**placement) if placement else None,
            stop_signalled=bool(data.get("stop_signalled")),
            phases_seen=int(data.get("phases_seen") or 0),
            metric_offset=int(data.get("metric_offset") or 0),
            metric_steps={str(k): int(v) for k, v in (data.get("metric_steps") or {}).items()},
            utilization_offsets={str(k): int(v) for k, v in (data.get("utilization_offsets") or {}).items()},
            ledger=data.get("ledger"),
            model_artifacts=data.get("model_artifacts"),
            output_artifacts=data.get("output_artifacts"),
            billing=billing,
            final_metrics=tuple(data.get("final_metrics") or ()),
            exit_codes=tuple(data.get("exit_codes") or ()),
            extra={k: v for k, v in data.items() if k not in known},
        )


_BILLING_KEYS = {
    "training_seconds",
    "billable_seconds",
    "cost_usd",
    "sagemaker_cost_usd",
    "price_per_hour_usd",
    "billed_as",
}


@dataclasses.dataclass(frozen=True)
class StatusTransition:
    status: SecondaryStatus
    start: dt.datetime
    end: dt.datetime | None = None
    message: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "Status": self.status.value,
            "StartTime": self.start,
            "EndTime": self.end,
            "StatusMessage": self.message or self.status.message,
        }


@dataclasses.dataclass(frozen=True)
class JobState:
    """Where a job of any kind stands. Transitions return new states; nothing mutates in place.

    ``started`` is when its work began (SageMaker's TrainingStartTime / ProcessingStartTime),
    ``ended`` when it ended.
    """

    status: TrainingJobStatus
    secondary: SecondaryStatus
    transitions: tuple[StatusTransition, ...]
    failure_reason: str | None = None
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    last_modified: dt.datetime | None = None
    scaled_down: str | None = None

    @classmethod
    def new(cls, now: dt.datetime) -> JobState:
        return cls(
            TrainingJobStatus.IN_PROGRESS,
            SecondaryStatus.STARTING,
            (StatusTransition(SecondaryStatus.STARTING, now),),
            last_modified=now,
        )

    def advance(self, secondary: SecondaryStatus, now: dt.datetime, message: str = "") -> JobState:
        """Enter a new secondary status (closing the current transition). No-op if already there."""
        if secondary == self.secondary or self.status.is_terminal:
            return self
        closed = [*self.transitions[:-1], dataclasses.replace(self.transitions[-1], end=now)]
        state = dataclasses.replace(
            self,
            secondary=secondary,
            transitions=(*closed, StatusTransition(secondary, now, message=message)),
            last_modified=now,
        )
        if secondary == SecondaryStatus.TRAINING and state.started is None:
            state = dataclasses.replace(state, started=now)
        return state

    def waiting(self, message: str, now: dt.datetime) -> JobState:
        """Pending, saying why (``message``: the transition's StatusMessage). A job already
        Pending keeps its transition and gets the new message when the reason changed; a job
        stopping or ended is left as it is."""
        if self.status != TrainingJobStatus.IN_PROGRESS:
            return self
        if self.secondary != SecondaryStatus.PENDING:
            return self.advance(SecondaryStatus.PENDING, now, message)
        last = self.transitions[-1]
        if last.message == message:
            return self
        return dataclasses.replace(
            self,
            transitions=(*self.transitions[:-1], dataclasses.replace(last, message=message)),
            last_modified=now,
        )

    def stopping(self, now: dt.datetime) -> JobState:
        if self.status != TrainingJobStatus.IN_PROGRESS:
            return self
        state = self.advance(SecondaryStatus.STOPPING, now)
        return dataclasses.replace(state, status=TrainingJobStatus.STOPPING)

    def finish(
        self,
        status: TrainingJobStatus,
        secondary: SecondaryStatus,
        now: dt.datetime,
        failure_reason: str | None = None,
    ) -> JobState:
        """Reach a terminal state; the last transition closes at ``now``."""
        if self.status.is_terminal:
            return self
        state = self.advance(secondary, now)
        closed = (*state.transitions[:-1], dataclasses.replace(state.transitions[-1], end=now))
        return dataclasses.replace(
            state,
            status=status,
            transitions=closed,
            failure_reason=failure_reason,
            started=state.started or now,
            ended=now,
            last_modified=now,
        )

    def training_seconds(self, now: dt.datetime) -> int:
        if self.started is None:
            return 0
        end = self.ended or now
        return max(int((end - self.started).total_seconds()), 1 if self.ended else 0)


class JobSpec(Protocol):
    """What the scheduler and the instance agent need of any job kind's spec."""

    kind: ClassVar[str]  # "training" | "processing"

    @property
    def name(self) -> str: ...
    @property
    def image(self) -> str | None: ...
    @property
    def instance_type(self) -> str: ...
    @property
    def instance_count(self) -> int: ...
    @property
    def max_runtime_seconds(self) -> int: ...
    @property
    def max_retry_attempts(self) -> int: ...
    @property
    def metric_definitions(self) -> tuple[MetricDefinition, ...]: ...
    @property
    def request(self) -> Mapping[str, Any]: ...


SpecT = TypeVar("SpecT", bound=JobSpec)


@dataclasses.dataclass(frozen=True)
class Job(Generic[SpecT]):
    """A job as the store keeps it: the spec, the state, and its run record.

    ``run`` (:class:`~shipyard.core.jobs.JobRun`) holds what the platform decided and observed
    while running the job: the placement, the launched instances, log offsets, artifacts, final
    metrics, billing. Training, processing and transform jobs are all Jobs; the scheduler runs
    each.
    """

    spec: SpecT
    arn: str
    created: dt.datetime
    state: JobState
    run: JobRun = dataclasses.field(default_factory=JobRun)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    def with_state(self, state: JobState) -> Job[SpecT]:
        return dataclasses.replace(self, state=state)

    def with_run(self, **changes: Any) -> Job[SpecT]:
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **changes))


TrainingJob = Job[TrainingJobSpec]
