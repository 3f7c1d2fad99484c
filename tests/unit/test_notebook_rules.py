"""Notebook instances' states and request rules (core/notebooks.py), as pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from shipyard.core.notebooks import (
    NotebookAction,
    NotebookStatus,
    check_request,
    is_idle,
    link_token,
    recovered,
    session_seconds,
    session_token,
    transition,
)
from shipyard.errors import ValidationError

ARN = "arn:aws:sagemaker:us-east-1:000000000000:notebook-instance/nb"
S = NotebookStatus
T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("status", "action", "after"),
    [
        (S.STOPPED, NotebookAction.START, S.PENDING),
        (S.FAILED, NotebookAction.START, S.PENDING),
        (S.IN_SERVICE, NotebookAction.STOP, S.STOPPING),
        (S.STOPPED, NotebookAction.DELETE, S.DELETING),
        (S.FAILED, NotebookAction.DELETE, S.DELETING),
        (S.STOPPED, NotebookAction.UPDATE, S.UPDATING),
    ],
)
def test_allowed_transitions(status: NotebookStatus, action: NotebookAction, after: NotebookStatus) -> None:
    assert transition(status, action, ARN) == after


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        (
            S.IN_SERVICE,
            NotebookAction.DELETE,
            "Status (InService) not in ([Stopped, Failed]). Unable to transition to (Deleting)",
        ),
        (S.PENDING, NotebookAction.DELETE, "Status (Pending) not in ([Stopped, Failed])"),
        (
            S.STOPPED,
            NotebookAction.STOP,
            "Status (Stopped) not in ([InService]). Unable to transition to (Stopping)",
        ),
        (
            S.IN_SERVICE,
            NotebookAction.START,
            "Status (InService) not in ([Stopped, Failed]). Unable to transition to (Pending)",
        ),
        (S.IN_SERVICE, NotebookAction.UPDATE, "Unable to transition to (Updating)"),
        (S.STOPPING, NotebookAction.START, "Status (Stopping)"),
    ],
)
def test_refused_transitions_say_so_as_sagemaker_does(
    status: NotebookStatus, action: NotebookAction, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        transition(status, action, ARN)
    assert message in refused.value.message
    assert ARN in refused.value.message


def test_a_new_server_starts_again_what_was_running_and_finishes_what_was_stopping() -> None:
    assert recovered(S.IN_SERVICE) == S.PENDING
    assert recovered(S.PENDING) == S.PENDING
    assert recovered(S.STOPPING) == S.STOPPED
    assert recovered(S.UPDATING) == S.STOPPED
    for kept in (S.STOPPED, S.FAILED, S.DELETING):
        assert recovered(kept) == kept


def test_idleness_counts_from_the_last_activity_or_the_start_of_service() -> None:
    later = T0 + dt.timedelta(seconds=600)
    assert is_idle(T0, later, 600, since=T0 - dt.timedelta(hours=1))
    assert not is_idle(T0 + dt.timedelta(seconds=1), later, 600, since=T0)
    # Activity Jupyter reports from before this run does not count against it.
    assert not is_idle(T0 - dt.timedelta(days=1), later, 600, since=T0 + dt.timedelta(seconds=300))
    assert is_idle(None, later, 600, since=T0)
    assert not is_idle(T0, later + dt.timedelta(days=9), 0, since=T0)  # 0: never


def test_session_duration_bounds_are_sagemakers() -> None:
    assert session_seconds(None) == 43200
    assert session_seconds(1800) == 1800
    for bad in (1799, 43201, "3600", True):
        with pytest.raises(ValidationError) as refused:
            session_seconds(bad)
        assert refused.value.field == "SessionExpirationDurationInSeconds"


def test_requests_naming_what_is_not_here_are_refused_by_member() -> None:
    offered = {"ml.t3.medium": True, "ml.p3.2xlarge": False}
    check_request({"InstanceType": "ml.t3.medium"}, offered)
    with pytest.raises(ValidationError) as bad_type:
        check_request({"InstanceType": "ml.p3.2xlarge"}, offered)
    assert bad_type.value.field == "InstanceType" and "ml.p3.2xlarge" in bad_type.value.message
    assert "ml.t3.medium" in bad_type.value.message
    for member in ("LifecycleConfigName", "DefaultCodeRepository", "AcceleratorTypes"):
        with pytest.raises(ValidationError) as refused:
            check_request({"InstanceType": "ml.t3.medium", member: "x"}, offered)
        assert refused.value.field == member


def test_tokens_are_signed_with_the_runs_key() -> None:
    key, other = b"k" * 32, b"o" * 32
    assert link_token(key, 100, 200).startswith("u.100.200.")
    assert link_token(key, 100, 200) != link_token(other, 100, 200)
    assert session_token(key, 200).startswith("s.200.")
    assert session_token(key, 200) != session_token(key, 201)
