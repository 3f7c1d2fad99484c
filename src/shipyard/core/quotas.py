"""Quotas: the site's (SageMaker's account-level service limits) and each user's and group's.
Pure rules.

Site quotas (:class:`Quotas`): each rule takes the numbers (what the site allows, what is in use,
what a request asks) and raises :class:`~shipyard.errors.ResourceLimitExceeded` naming the limit,
its value and the request, as SageMaker words it; the services call them when work is created.
They keep a request that no machine could hold (``InstanceCount`` of a million) from ever
reaching the scheduler.

Quotas by user and group (:class:`QuotaBook`: :class:`Limits` by :class:`Subject`): concurrent
vCPUs, GPUs and instances of running jobs, and endpoint instances. A user's work counts against
their own quota (else the default) and each of their groups' (:meth:`QuotaBook.bounds`). A job
larger than a quota on its own is refused at create (:func:`check_outright`); otherwise it waits
in the queue until the quota has room (the scheduler asks :func:`past`). Endpoints do not queue:
past the quota they are refused (:func:`check_room`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from shipyard.errors import LimitExceededError, ResourceLimitExceeded, ValidationError


@dataclasses.dataclass(frozen=True)
class Quotas:
    """What the site allows (the server's ``max_*`` settings, whose names these mirror).

    Attributes:
        instances_per_job: InstanceCount of one training, processing or transform job (a tuning
            job's trials too).
        job_instances: Instances of all active training, processing and transform jobs together.
        tuning_training_jobs: A tuning job's MaxNumberOfTrainingJobs (a grid's size when inferred).
        tuning_parallel_jobs: A tuning job's MaxParallelTrainingJobs.
        instances_per_variant: An endpoint production variant's instance count.
        endpoint_instances: Instances of all endpoints together.
    """

    instances_per_job: int = 20
    job_instances: int = 100
    tuning_training_jobs: int = 750
    tuning_parallel_jobs: int = 10
    instances_per_variant: int = 20
    endpoint_instances: int = 100

    def check_job(self, kind: str, count: int, *, in_use: int | None) -> None:
        """A ``kind`` job (``training``, ...) of ``count`` instances, with ``in_use`` instances of
        active jobs already (None: not counted, as for a tuning job's trial, whose tuning job's
        limits were checked)."""
        _check(
            f"Number of instances per {kind} job", self.instances_per_job, 0, count, "max_instances_per_job"
        )
        if in_use is not None:
            _check(
                "Number of instances across all training, processing and transform jobs",
                self.job_instances,
                in_use,
                count,
                "max_job_instances",
            )

    def check_tuning(self, max_jobs: int, max_parallel: int, instance_counts: Iterable[int]) -> None:
        """A tuning job of ``max_jobs`` trials, ``max_parallel`` at a time, whose training job
        definitions ask ``instance_counts`` instances each."""
        for count in instance_counts:
            self.check_job("training", count, in_use=None)
        _check(
            "Number of training jobs per hyperparameter tuning job",
            self.tuning_training_jobs,
            0,
            max_jobs,
            "max_tuning_training_jobs",
            unit="Training jobs",
        )
        _check(
            "Number of parallel training jobs per hyperparameter tuning job",
            self.tuning_parallel_jobs,
            0,
            max_parallel,
            "max_tuning_parallel_jobs",
            unit="Training jobs",
        )

    def check_variant(self, instance_type: str, count: int) -> None:
        """A production variant of ``count`` instances of ``instance_type``."""
        _check(
            f"{instance_type} instances per endpoint variant",
            self.instances_per_variant,
            0,
            count,
            "max_instances_per_variant",
        )

    def check_endpoint(self, count: int, *, in_use: int) -> None:
        """An endpoint of ``count`` instances, with ``in_use`` serving other endpoints already."""
        _check(
            "Number of instances across all endpoints",
            self.endpoint_instances,
            in_use,
            count,
            "max_endpoint_instances",
        )


def _check(limit: str, value: int, used: int, delta: int, setting: str, *, unit: str = "Instances") -> None:
    if used + delta > value:
        raise ResourceLimitExceeded(limit, value, used=used, delta=delta, setting=setting, unit=unit)


# -- quotas by user and group ---------------------------------------------------------------------
LIMIT_NAMES = ("vcpus", "gpus", "instances", "endpoints")
"""What a user's or group's quota may limit: concurrent vCPUs, GPUs and instances of running jobs
(as placed), and endpoint instances."""
_UNITS = {"vcpus": "vCPU", "gpus": "GPU", "instances": "instance", "endpoints": "endpoint instance"}


@dataclasses.dataclass(frozen=True)
class Limits:
    """One user's or group's limits on concurrent work (None: no limit on that)."""

    vcpus: int | None = None
    gpus: int | None = None
    instances: int | None = None
    endpoints: int | None = None

    @classmethod
    def parse(cls, data: object, field: str) -> Limits:
        """Limits from a mapping of names (:data:`LIMIT_NAMES`) to whole numbers of 0 or more
        (None: no limit).

        Raises:
            ValidationError: naming ``field`` and the key or value that is wrong.
        """
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"{field} must be a table of limits ({', '.join(LIMIT_NAMES)}), got {data!r}",
                field=field,
                value=data,
            )
        return cls().updated(data, field)

    def updated(self, changes: Mapping[str, object], field: str = "quota") -> Limits:
        """These limits with ``changes`` made (a None value removes that limit)."""
        values: dict[str, int | None] = {}
        for key, value in changes.items():
            if key not in LIMIT_NAMES:
                raise ValidationError(
                    f"{field}.{key} is not a quota; the quotas are {', '.join(LIMIT_NAMES)}",
                    field=f"{field}.{key}",
                    value=key,
                )
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValidationError(
                    f"{field}.{key} must be a whole number of 0 or more, got {value!r}",
                    field=f"{field}.{key}",
                    value=value,
                )
            values[key] = value
        return dataclasses.replace(self, **values)

    def to_json(self) -> dict[str, int]:
        return {name: value for name in LIMIT_NAMES if (value := getattr(self, name)) is not None}

    @property
    def unlimited(self) -> bool:
        return not self.to_json()


@dataclasses.dataclass(frozen=True, order=True)
class Subject:
    """Whom a quota is for: ``default`` (every user without a quota of their own), a user, or a
    group (its members' work together)."""

    kind: str  # "default" | "user" | "group"
    name: str = ""

    @classmethod
    def parse(cls, text: str, field: str = "subject") -> Subject:
        """``default``, ``group:NAME``, ``user:NAME`` or a user's bare ``NAME``.

        Raises:
            ValidationError: not one of those, or not a name IAM accepts.
        """
        from shipyard.core.identity import check_name

        if text == "default":
            return cls("default")
        kind, _, name = text.rpartition(":")
        if kind not in ("", "user", "group"):
            raise ValidationError(
                f"A quota is for 'default', a user (NAME or user:NAME) or a group (group:NAME), got {text!r}",
                field=field,
                value=text,
            )
        return cls(kind or "user", check_name(name, field))

    def __str__(self) -> str:
        return self.kind if self.kind == "default" else f"{self.kind}:{self.name}"

    @property
    def config_key(self) -> str:
        """Where the config file sets it: ``quotas.default``, ``quotas.users.<name>``, ..."""
        return "quotas.default" if self.kind == "default" else f"quotas.{self.kind}s.{self.name}"

    @property
    def label(self) -> str:
        """As messages name whose work is counted: ``alice``, ``group students``."""
        return f"group {self.name}" if self.kind == "group" else self.name or "default"


@dataclasses.dataclass(frozen=True)
class Bound:
    """One quota a user's work counts against: ``holder`` is whose work is counted together (the
    user, or a group of theirs), ``source`` where the limits come from (the user's own quota, the
    default, or the group's)."""

    holder: Subject
    source: Subject
    limits: Limits


@dataclasses.dataclass(frozen=True)
class Load:
    """Work counted against a quota: vCPUs, GPUs and instances of running jobs as placed, and
    endpoint instances."""

    vcpus: float = 0.0
    gpus: int = 0
    instances: int = 0
    endpoints: int = 0

    def __add__(self, other: Load) -> Load:
        return Load(
            self.vcpus + other.vcpus,
            self.gpus + other.gpus,
            self.instances + other.instances,
            self.endpoints + other.endpoints,
        )


@dataclasses.dataclass(frozen=True)
class QuotaBook:
    """Every quota by subject. A user's work counts against their own quota (else the default)
    and against each of their groups' quotas; root's work against none."""

    entries: Mapping[Subject, Limits] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_config(cls, section: object) -> QuotaBook:
        """The config file's ``[quotas]``: ``default``, ``users.<name>`` and ``groups.<name>``
        tables of limits.

        Raises:
            ValidationError: naming the key (``quotas.users.alice.vcpus``) that is wrong.
        """
        if not isinstance(section, Mapping):
            raise ValidationError("quotas must be a table", field="quotas", value=section)
        entries: dict[Subject, Limits] = {}
        for key, value in section.items():
            if key == "default":
                entries[Subject("default")] = Limits.parse(value, "quotas.default")
            elif key in ("users", "groups"):
                if not isinstance(value, Mapping):
                    raise ValidationError(
                        f"quotas.{key} must be a table of names", field=f"quotas.{key}", value=value
                    )
                for name, limits in value.items():
                    subject = Subject.parse(f"{key[:-1]}:{name}", f"quotas.{key} name")
                    entries[subject] = Limits.parse(limits, subject.config_key)
            else:
                raise ValidationError(
                    f"quotas.{key} is not a quota table; use quotas.default, quotas.users.<name> "
                    "or quotas.groups.<name>",
                    field=f"quotas.{key}",
                    value=key,
                )
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def get(self, subject: Subject) -> Limits | None:
        return self.entries.get(subject)

    def effective(self, subject: Subject) -> Limits:
        """What applies to ``subject``: its own limits; a user without, the default's."""
        own = self.entries.get(subject)
        if own is not None:
            return own
        if subject.kind == "user":
            return self.entries.get(Subject("default"), Limits())
        return Limits()

    def with_entries(self, changes: Mapping[Subject, Limits]) -> QuotaBook:
        return QuotaBook({**self.entries, **changes})

    def bounds(self, user: str | None, groups: Iterable[str] = ()) -> tuple[Bound, ...]:
        """The quotas the work of ``user`` (a user's name; None: root) counts against."""
        if user is None:
            return ()
        found = []
        subject = Subject("user", user)
        own = self.entries.get(subject)
        default = self.entries.get(Subject("default"))
        if own is not None or default is not None:
            source = subject if own is not None else Subject("default")
            limits = own if own is not None else default
            assert limits is not None
            if not limits.unlimited:
                found.append(Bound(subject, source, limits))
        for group in sorted(set(groups)):
            holder = Subject("group", group)
            limits = self.entries.get(holder)
            if limits is not None and not limits.unlimited:
                found.append(Bound(holder, holder, limits))
        return tuple(found)


def past(bound: Bound, used: Load, asked: Load) -> str | None:
    """The first limit of ``bound`` that ``asked`` on top of ``used`` would pass (only what is
    asked counts: a job without GPUs never waits for a GPU quota); None when it fits."""
    for name in LIMIT_NAMES:
        limit = getattr(bound.limits, name)
        want = getattr(asked, name)
        if limit is not None and want > 0 and getattr(used, name) + want > limit + 1e-9:
            return name
    return None


def check_outright(bounds: Iterable[Bound], asked: Load, what: str = "this job") -> None:
    """Refuse work larger than a quota on its own (it could never start, however long it waited).

    Raises:
        QuotaExceeded: naming the quota, its value and the request.
    """
    for bound in bounds:
        name = past(bound, Load(), asked)
        if name is not None:
            raise QuotaExceeded(bound, name, used=0, asked=getattr(asked, name), what=what)


def check_room(bounds: Iterable[Bound], used: Mapping[Subject, Load], asked: Load, what: str) -> None:
    """Refuse work that does not fit what a quota has left (endpoints, which do not queue).

    Raises:
        QuotaExceeded: naming the quota, its value, what is in use and the request.
    """
    for bound in bounds:
        in_use = used.get(bound.holder, Load())
        name = past(bound, in_use, asked)
        if name is not None:
            raise QuotaExceeded(
                bound, name, used=getattr(in_use, name), asked=getattr(asked, name), what=what
            )


def amount(value: float, name: str) -> str:
    """``2 vCPUs``, ``1 GPU``, ``3 instances``, ``16 GiB of memory``."""
    if name == "memory":
        return f"{value:g} GiB of memory"
    unit = _UNITS[name]
    return f"{value:g} {unit}" + ("" if value == 1 else "s")


class QuotaExceeded(LimitExceededError):
    """Work past a user's or group's quota (SageMaker's ResourceLimitExceeded, in its words)."""

    def __init__(self, bound: Bound, name: str, *, used: float, asked: float, what: str) -> None:
        limit = getattr(bound.limits, name)
        whose = f"{bound.holder.label}" + (" (the default quota)" if bound.source.kind == "default" else "")
        fix = f"shipyard quotas set {bound.holder} {name}=<n>"
        if used:
            wait = (
                f"Delete or scale down an endpoint of {bound.holder.label}'s"
                if name == "endpoints"
                else f"Wait for work of {bound.holder.label}'s to end"
            )
            detail = (
                f"with current utilization of {amount(used, name)} and a request delta of {amount(asked, name)}. "
                f"{wait}, or ask an administrator to raise it ({fix})."
            )
        else:
            detail = (
                f"and {what} asks {amount(asked, name)} at once, so it could never run. Ask for less, or "
                f"ask an administrator to raise it ({fix})."
            )
        super().__init__(f"The quota '{_TITLES[name]} of {whose}' is {amount(limit, name)}, {detail}")
        self.bound = bound
        self.limit_name = name


_TITLES = {"vcpus": "vCPUs", "gpus": "GPUs", "instances": "Instances", "endpoints": "Endpoint instances"}
