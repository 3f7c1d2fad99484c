"""The rules that end a job's run (core/outcomes.py), table by table."""

from __future__ import annotations

import datetime as dt

import pytest

from shipyard.core import outcomes
from shipyard.core.jobs import JobState
from shipyard.core.outcomes import InstanceEnd, Outcome
from shipyard.core.training import MetricDefinition, MetricPoint, SecondaryStatus
from shipyard.core.training import TrainingJobStatus as S

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
C, F, ST, MR = Outcome.COMPLETED, Outcome.FAILED, Outcome.STOPPED, Outcome.MAX_RUNTIME


@pytest.mark.parametrize(
    ("outcomes_", "stopping", "status", "secondary", "failure"),
    [
        ([C], False, S.COMPLETED, SecondaryStatus.COMPLETED, None),
        ([C, C], False, S.COMPLETED, SecondaryStatus.COMPLETED, None),
        ([F], False, S.FAILED, SecondaryStatus.FAILED, "boom"),
        ([C, F], False, S.FAILED, SecondaryStatus.FAILED, "algo-2: boom"),  # names the host of several
        ([ST, F], False, S.FAILED, SecondaryStatus.FAILED, "algo-2: boom"),  # Failed beats Stopped
        ([MR, F], True, S.FAILED, SecondaryStatus.FAILED, "algo-2: boom"),  # ... and a stop asked for
        ([MR, ST], False, S.STOPPED, SecondaryStatus.STOPPED, None),  # Stopped beats MaxRuntimeExceeded
        ([C], True, S.STOPPED, SecondaryStatus.STOPPED, None),  # stopped while it completed
        ([MR], False, S.STOPPED, SecondaryStatus.MAX_RUNTIME_EXCEEDED, None),
        ([C, MR], False, S.STOPPED, SecondaryStatus.MAX_RUNTIME_EXCEEDED, None),
    ],
)
def test_judge_orders_instance_outcomes(
    outcomes_: list[Outcome], stopping: bool, status: S, secondary: SecondaryStatus, failure: str | None
) -> None:
    ends = [
        InstanceEnd(f"algo-{i + 1}", o, "boom" if o == F else ("over time" if o == MR else None))
        for i, o in enumerate(outcomes_)
    ]
    verdict = outcomes.judge(ends, stopping=stopping)
    assert (verdict.status, verdict.secondary, verdict.failure_reason) == (status, secondary, failure)
    if secondary == SecondaryStatus.MAX_RUNTIME_EXCEEDED:
        assert verdict.message == "over time"


def test_a_failure_without_a_reason_still_says_the_script_failed() -> None:
    verdict = outcomes.judge([InstanceEnd("algo-1", F)], stopping=False)
    assert verdict.failure_reason == "AlgorithmError: the training script failed"


@pytest.mark.parametrize(
    ("attempt", "retries", "status", "expected"),
    [
        (0, 1, S.IN_PROGRESS, None),  # a retry
        (1, 2, S.IN_PROGRESS, None),
        (1, 1, S.IN_PROGRESS, S.FAILED),  # none left
        (0, 0, S.IN_PROGRESS, S.FAILED),
        (0, 3, S.STOPPING, S.STOPPED),  # being stopped anyway: no retry, not a failure
    ],
)
def test_a_lost_instance_retries_while_attempts_are_left(
    attempt: int, retries: int, status: S, expected: S | None
) -> None:
    verdict = outcomes.on_lost_instance("lost!", attempt=attempt, max_retry_attempts=retries, status=status)
    if expected is None:
        assert verdict is None
    else:
        assert verdict is not None and verdict.status == expected
        assert verdict.failure_reason == ("lost!" if expected == S.FAILED else None)


def test_lost_reason_prefers_what_the_backend_knows() -> None:
    assert (
        outcomes.lost_reason("algo-2", "/j", "node n1 died")
        == "InternalServerError: algo-2 was lost: node n1 died"
    )
    assert "agent of algo-1 exited without reporting" in outcomes.lost_reason("algo-1", "/j", None)
    assert "/j/agent.log" in outcomes.lost_reason("algo-1", "/j", None)


@pytest.mark.parametrize(
    ("starts", "ends", "seconds"),
    [
        ([0], [10], 10),
        ([0, 2], [9, 12], 12),  # earliest start to latest end
        ([0], [0.2], 1),  # at least one second
        ([0], [10.6], 11),  # by the second, rounded
        ([], [], 1),  # nothing reported: now to now
    ],
)
def test_billed_interval(starts: list[float], ends: list[float], seconds: int) -> None:
    at = [T0 + dt.timedelta(seconds=s) for s in starts]
    to = [T0 + dt.timedelta(seconds=s) for s in ends]
    billed = outcomes.billed(at, to, instance_count=2, now=T0)
    assert billed.seconds == seconds
    assert billed.billable_seconds == 2 * seconds
    assert billed.interval_start == billed.ended - dt.timedelta(seconds=seconds)  # never ends in the future


def test_final_metrics_are_each_metrics_last_value() -> None:
    series = {
        "loss": [MetricPoint("loss", 0.9, T0, 0), MetricPoint("loss", 0.5, T0 + dt.timedelta(seconds=1), 1)],
        "acc": [MetricPoint("acc", 0.7, T0, 0)],
        "empty": [],
    }
    assert outcomes.final_metrics(series) == (
        {"MetricName": "acc", "Value": 0.7, "Timestamp": T0.isoformat()},
        {"MetricName": "loss", "Value": 0.5, "Timestamp": (T0 + dt.timedelta(seconds=1)).isoformat()},
    )


def test_extract_metrics_counts_steps_per_metric() -> None:
    definitions = (
        MetricDefinition("loss", r"loss=([0-9.]+)"),
        MetricDefinition("acc", r"acc: ([0-9.]+)"),
        MetricDefinition("bad", r"(unclosed"),  # does not compile: counts for nothing
        MetricDefinition("nan", r"val=(\w+)"),  # not a number: skipped
    )
    records = [(0, "loss=0.9"), (1000, "acc: 0.5 loss=0.7"), (2000, "val=abc"), (3000, "nothing")]
    points, steps = outcomes.extract_metrics(records, definitions, {"loss": 4})
    assert [(p.name, p.value, p.step) for p in points] == [
        ("loss", 0.9, 4),
        ("loss", 0.7, 5),
        ("acc", 0.5, 0),
    ]
    assert steps == {"loss": 6, "acc": 1}
    assert points[1].timestamp == dt.datetime.fromtimestamp(1, dt.UTC)


def test_phases_replay_at_their_own_times_while_in_progress() -> None:
    state = JobState.new(T0)
    times = [T0 + dt.timedelta(seconds=s) for s in (1, 2, 3)]
    state = outcomes.replay_phases(
        state, [("Downloading", times[0]), ("Training", times[1]), ("Bogus", times[2])]
    )
    assert [t.status for t in state.transitions] == [
        SecondaryStatus.STARTING,
        SecondaryStatus.DOWNLOADING,
        SecondaryStatus.TRAINING,
    ]
    assert state.started == times[1]
    stopped = state.stopping(times[2])
    assert outcomes.replay_phases(stopped, [("Uploading", times[2])]) == stopped  # only in progress moves


def test_finish_records_the_work_interval_and_the_max_runtime_message() -> None:
    state = JobState.new(T0)
    verdict = outcomes.Verdict(S.STOPPED, SecondaryStatus.MAX_RUNTIME_EXCEEDED, message="too long")
    end = T0 + dt.timedelta(seconds=5)
    final = outcomes.finish(state, verdict, T0 + dt.timedelta(seconds=1), end)
    assert final.status == S.STOPPED and final.secondary == SecondaryStatus.MAX_RUNTIME_EXCEEDED
    assert final.transitions[-1].message == "too long"
    assert (final.started, final.ended) == (T0 + dt.timedelta(seconds=1), end)


def test_a_failure_reason_shows_interpreters_as_python_and_no_host_path() -> None:
    from shipyard.core.outcomes import without_host_paths

    reason = (
        'File "/srv/shipyard/envs/ab12/lib/python3.11/site-packages/sklearn/base.py"\n'
        'Command "/opt/ml/.shipyard-layer/bin/python /opt/ml/code/train.py", exit code: 1\n'
        "also /srv/shipyard/envs/ab12/bin/python3.11 and /srv/shipyard/jobs/x"
    )
    shown = without_host_paths(reason, {"/srv/shipyard": "<data dir>"})
    assert 'File "lib/python3.11/site-packages/sklearn/base.py"' in shown
    assert 'Command "python /opt/ml/code/train.py"' in shown  # the job's layer's: `python` on its PATH
    assert "also python3.11 and <data dir>/jobs/x" in shown
