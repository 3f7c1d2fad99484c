"""Notebook instances: their states, the transitions SageMaker allows, and the rules for a
create or update request (pure).

A notebook instance is ``Pending`` while its Jupyter server starts, ``InService`` once it
answers, ``Stopping`` → ``Stopped`` when stopped (by the user or for idleness), ``Failed`` with a
FailureReason when it could not start or its server ended by itself, and ``Deleting`` on its way
out. The user's calls are allowed from the states SageMaker allows them from, and refused with
SageMaker's own message otherwise (:func:`transition`); :func:`recovered` says what a server
starting finds a notebook left in by the last one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from shipyard.errors import ValidationError


class NotebookStatus(enum.StrEnum):
    PENDING = "Pending"
    IN_SERVICE = "InService"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"
    DELETING = "Deleting"
    UPDATING = "Updating"


class NotebookAction(enum.StrEnum):
    """What a user asks of a notebook instance, and the status it moves to."""

    START = "Start"
    STOP = "Stop"
    DELETE = "Delete"
    UPDATE = "Update"

    @property
    def target(self) -> NotebookStatus:
        return {
            NotebookAction.START: NotebookStatus.PENDING,
            NotebookAction.STOP: NotebookStatus.STOPPING,
            NotebookAction.DELETE: NotebookStatus.DELETING,
            NotebookAction.UPDATE: NotebookStatus.UPDATING,
        }[self]


# The statuses each user action is allowed from (SageMaker's).
ALLOWED_FROM: Mapping[NotebookAction, tuple[NotebookStatus, ...]] = {
    NotebookAction.START: (NotebookStatus.STOPPED, NotebookStatus.FAILED),
    NotebookAction.STOP: (NotebookStatus.IN_SERVICE,),
    NotebookAction.DELETE: (NotebookStatus.STOPPED, NotebookStatus.FAILED),
    NotebookAction.UPDATE: (NotebookStatus.STOPPED, NotebookStatus.FAILED),
}

# Members of CreateNotebookInstance that need what is not here, refused by name.
UNSUPPORTED_MEMBERS = {
    "AcceleratorTypes": "Elastic Inference accelerators do not exist here (AWS retired them too)",
    "LifecycleConfigName": "notebook instance lifecycle configurations are not served",
    "DefaultCodeRepository": "code repositories are not cloned into notebook instances here; "
    "run git clone in the notebook's terminal",
    "AdditionalCodeRepositories": "code repositories are not cloned into notebook instances here; "
    "run git clone in the notebook's terminal",
}
MIN_SESSION_SECONDS = 1800
MAX_SESSION_SECONDS = 43200
DEFAULT_SESSION_SECONDS = 43200
URL_SECONDS = 300  # a presigned notebook URL is good for 5 minutes, as SageMaker's


def transition(status: NotebookStatus, action: NotebookAction, arn: str) -> NotebookStatus:
    """The status ``action`` moves a notebook in ``status`` to; ValidationException in
    SageMaker's words when it is not allowed from there."""
    allowed = ALLOWED_FROM[action]
    if status not in allowed:
        names = ", ".join(s.value for s in allowed)
        raise ValidationError(
            f"Status ({status.value}) not in ([{names}]). Unable to transition to "
            f"({action.target.value}) for Notebook Instance ({arn}).",
            field="NotebookInstanceStatus",
            value=status.value,
        )
    return action.target


def recovered(status: NotebookStatus) -> NotebookStatus:
    """What a notebook left in ``status`` by a server that ended is when the next one starts:
    one that was starting or in service starts again (its Jupyter server ended with the last
    Shipyard server, as an instance comes back after a host's reboot), one being stopped is
    stopped, one being updated is stopped with its update applied; the rest stay."""
    if status in (NotebookStatus.PENDING, NotebookStatus.IN_SERVICE):
        return NotebookStatus.PENDING
    if status in (NotebookStatus.STOPPING, NotebookStatus.UPDATING):
        return NotebookStatus.STOPPED
    return status


def is_idle(
    last_activity: dt.datetime | None, now: dt.datetime, idle_seconds: int, *, since: dt.datetime
) -> bool:
    """Whether a notebook in service since ``since`` whose Jupyter server last saw activity at
    ``last_activity`` (None: it did not say) has been idle for ``idle_seconds`` (0: never)."""
    if idle_seconds <= 0:
        return False
    latest = max(last_activity, since) if last_activity is not None else since
    return (now - latest).total_seconds() >= idle_seconds


def session_seconds(value: Any) -> int:
    """SessionExpirationDurationInSeconds of CreatePresignedNotebookInstanceUrl (SageMaker's
    default: 12 hours)."""
    if value is None:
        return DEFAULT_SESSION_SECONDS
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (MIN_SESSION_SECONDS <= value <= MAX_SESSION_SECONDS)
    ):
        raise ValidationError(
            f"SessionExpirationDurationInSeconds must be between {MIN_SESSION_SECONDS} and "
            f"{MAX_SESSION_SECONDS}, got {value!r}",
            field="SessionExpirationDurationInSeconds",
            value=value,
        )
    return value


def check_request(params: Mapping[str, Any], offered: Mapping[str, bool]) -> None:
    """A CreateNotebookInstance or UpdateNotebookInstance request's members that cannot be
    honoured here, refused naming the member: an instance type the catalog does not price for
    notebooks (``offered``: type → whether it is), the members in :data:`UNSUPPORTED_MEMBERS`."""
    for member, why in UNSUPPORTED_MEMBERS.items():
        if params.get(member):
            raise ValidationError(
                f"{member} is not supported by Shipyard: {why}", field=member, value=params[member]
            )
    instance_type = params.get("InstanceType")
    if instance_type is not None and not offered.get(instance_type, False):
        known = sorted(name for name, ok in offered.items() if ok)
        raise ValidationError(
            f"Value '{instance_type}' at 'instanceType' failed to satisfy constraint: the instance "
            f"type is not offered for notebook instances here (offered: {', '.join(known)})",
            field="InstanceType",
            value=instance_type,
        )


@dataclasses.dataclass(frozen=True)
class NotebookInstance:
    """One notebook instance as stored.

    Attributes:
        request: The create request, with updates applied (InstanceType, VolumeSizeInGB, ...).
        owner: The ARN of the user who created it (None: the lab's).
        in_service_since: When its current run entered service (idleness counts from there).
    """

    name: str
    arn: str
    region: str
    status: NotebookStatus
    request: Mapping[str, Any]
    created: dt.datetime
    last_modified: dt.datetime
    failure_reason: str | None = None
    owner: str | None = None
    url: str | None = None
    in_service_since: dt.datetime | None = None

    @property
    def instance_type(self) -> str:
        return str(self.request["InstanceType"])

    @property
    def role_arn(self) -> str:
        return str(self.request["RoleArn"])

    @property
    def volume_gb(self) -> int:
        return int(self.request.get("VolumeSizeInGB") or 5)

    def with_status(
        self, status: NotebookStatus, at: dt.datetime, *, failure_reason: str | None = None, **changes: Any
    ) -> NotebookInstance:
        return dataclasses.replace(
            self, status=status, last_modified=at, failure_reason=failure_reason, **changes
        )


def _signature(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def link_token(key: bytes, url_end: int, session_end: int) -> str:
    """The token of a presigned notebook link: good until ``url_end`` (epoch seconds), making a
    session good until ``session_end`` (the Jupyter server checks it: compute/local/_jupyter_config.py)."""
    body = f"u.{url_end}.{session_end}"
    return f"{body}.{_signature(key, body)}"


def session_token(key: bytes, session_end: int) -> str:
    """A session's token (the cookie a link sets; Shipyard's own ``Authorization: Shipyard``)."""
    body = f"s.{session_end}"
    return f"{body}.{_signature(key, body)}"


__all__ = [
    "ALLOWED_FROM",
    "DEFAULT_SESSION_SECONDS",
    "URL_SECONDS",
    "NotebookAction",
    "NotebookInstance",
    "NotebookStatus",
    "check_request",
    "is_idle",
    "link_token",
    "recovered",
    "session_seconds",
    "session_token",
    "transition",
]
