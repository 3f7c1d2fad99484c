"""SageMaker Experiments' entities: experiments, trials, trial components, and metric summaries.

Names are unique per kind without regard to case (SageMaker lower-cases them in ARNs), so an
entity is kept under ``key``, its lower-cased name, and answers with the name it was given.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Mapping
from typing import Any

from shipyard.errors import ConflictError, NotFoundError, ValidationError


class EntityKind(enum.Enum):
    """The kinds, by their ARN resource type."""

    EXPERIMENT = "experiment"
    TRIAL = "experiment-trial"
    TRIAL_COMPONENT = "experiment-trial-component"
    ARTIFACT = "artifact"  # lineage: under its id
    CONTEXT = "context"  # lineage: under its name
    ACTION = "action"  # lineage: under its name
    ASSOCIATION = "association"  # lineage: an edge, under a hash of its ends (no ARN of its own)

    @property
    def label(self) -> str:
        """How SageMaker's messages name the kind."""
        return _LABELS[self.value]

    @property
    def name_member(self) -> str:
        """The request member that names one: ExperimentName, TrialName, TrialComponentName."""
        return self.label.replace(" ", "") + "Name"


_LABELS = {
    "experiment": "Experiment",
    "experiment-trial": "Trial",
    "experiment-trial-component": "Trial Component",
    "artifact": "Artifact",
    "context": "Context",
    "action": "Action",
    "association": "Association",
}


class EntityNotFound(NotFoundError):
    """SageMaker's ResourceNotFound for an experiment, trial or trial component."""

    def __init__(self, kind: EntityKind, arn: str) -> None:
        super().__init__(f"{kind.label} '{arn}' does not exist.")
        self.field = kind.name_member
        self.value = arn


class DuplicateEntity(ValidationError, ConflictError):
    """The name is taken: a ValidationException saying "already exists", which the sagemaker
    SDK's load-or-create helpers look for before loading the existing one."""

    def __init__(self, kind: EntityKind, name: str) -> None:
        super().__init__(
            f"{kind.label} with name '{name}' already exists.", field=kind.name_member, value=name
        )


@dataclasses.dataclass(frozen=True)
class Entity:
    """One stored experiment, trial or trial component.

    ``document`` holds the members SageMaker answers besides names and times (DisplayName,
    Description, Status, Parameters, artifacts, MetadataProperties, a trial's ExperimentName),
    JSON-safe (times as ISO strings); ``metrics`` a trial component's :class:`MetricStats` by
    metric name; ``created_by`` the ARN of who created it (None: unsigned or root).
    """

    kind: EntityKind
    name: str
    arn: str
    created: dt.datetime
    last_modified: dt.datetime
    document: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    created_by: str | None = None

    @property
    def key(self) -> str:
        return self.name.lower()


@dataclasses.dataclass(frozen=True)
class MetricStats:
    """A metric's running summary (SageMaker keeps summaries, not the series, on a trial
    component): count, sum, sum of squares, min, max, and the value with the latest time."""

    count: int
    total: float
    squares: float
    minimum: float
    maximum: float
    last: float
    last_time: dt.datetime

    @classmethod
    def of(cls, value: float, at: dt.datetime) -> MetricStats:
        return cls(1, value, value * value, value, value, value, at)

    def add(self, value: float, at: dt.datetime) -> MetricStats:
        later = at >= self.last_time
        return MetricStats(
            self.count + 1,
            self.total + value,
            self.squares + value * value,
            min(self.minimum, value),
            max(self.maximum, value),
            value if later else self.last,
            at if later else self.last_time,
        )

    def summary(self, name: str, source_arn: str | None = None) -> dict[str, Any]:
        """TrialComponentMetricSummary: StdDev is the sample standard deviation (0 for one value)."""
        mean = self.total / self.count
        spread = 0.0
        if self.count > 1:
            spread = math.sqrt(max(0.0, (self.squares - self.count * mean * mean) / (self.count - 1)))
        return {
            "MetricName": name,
            "SourceArn": source_arn,
            "TimeStamp": self.last_time,
            "Max": self.maximum,
            "Min": self.minimum,
            "Last": self.last,
            "Count": self.count,
            "Avg": mean,
            "StdDev": spread,
        }

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["last_time"] = self.last_time.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricStats:
        return cls(**{**data, "last_time": dt.datetime.fromisoformat(data["last_time"])})


def parameter_value(raw: Any) -> dict[str, Any]:
    """A job's hyperparameter as a trial component parameter: a number where the text is one
    (the SDK sends every hyperparameter as text), else the text as it is."""
    if isinstance(raw, bool):
        return {"StringValue": str(raw).lower()}
    if isinstance(raw, int | float):
        return {"NumberValue": float(raw)}
    text = str(raw)
    try:
        number = float(text)
    except ValueError:
        return {"StringValue": text}
    return {"NumberValue": number} if math.isfinite(number) else {"StringValue": text}
