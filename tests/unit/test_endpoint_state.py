"""An endpoint's life as pure rules: which status each operation's end leaves, what comes next."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shipyard.core.hosting import EndpointConfigSpec, EndpointState, EndpointStatus, Step, VariantSpec
from shipyard.errors import ValidationError

BLUE = VariantSpec("Blue", "model-a", 1, "ml.m5.large", 1.0)
NEW = EndpointConfigSpec("config-b", (VariantSpec("Green", "model-b", 2, "ml.m5.large", 1.0),))


def _state(status: EndpointStatus, **changes: object) -> EndpointState:
    return EndpointState(status, "config-a", (BLUE,), **changes)  # type: ignore[arg-type]


C, U, S, F, D = (
    EndpointStatus.CREATING,
    EndpointStatus.UPDATING,
    EndpointStatus.IN_SERVICE,
    EndpointStatus.FAILED,
    EndpointStatus.DELETING,
)


@pytest.mark.parametrize(
    ("before", "event", "status", "reason"),
    [
        (C, lambda s: s.brought_up(), S, None),
        (C, lambda s: s.bring_up_failed("ValueError: no weights"), F, "ValueError: no weights"),
        (S, lambda s: s.brought_up(), S, None),  # after a server start
        (S, lambda s: s.bring_up_failed("gone"), F, "gone"),
        (U, lambda s: s.brought_up(), U, None),  # a restart during an update: it goes on
        (U, lambda s: s.updated(NEW), S, None),
        (U, lambda s: s.update_failed("boom"), S, "Updating failed, kept the previous config: boom"),
        (U, lambda s: s.scaled(), S, None),
        (U, lambda s: s.scale_failed("no room"), S, "Scaling failed: no room"),
        (S, lambda s: s.delete(), D, None),
        (U, lambda s: s.delete(), D, None),
        (F, lambda s: s.delete(), D, None),
        # an operation that ends after the endpoint moved on changes nothing
        (D, lambda s: s.brought_up(), D, None),
        (D, lambda s: s.updated(NEW), D, None),
        (D, lambda s: s.bring_up_failed("late"), D, None),
        (F, lambda s: s.scaled(), F, None),
        (S, lambda s: s.update_failed("late"), S, None),
    ],
)
def test_how_an_operation_ends_sets_the_status(
    before: EndpointStatus,
    event: Callable[[EndpointState], EndpointState],
    status: EndpointStatus,
    reason: str | None,
) -> None:
    after = event(_state(before))
    assert (after.status, after.failure_reason) == (status, reason)


def test_an_update_that_lands_serves_the_new_config_and_one_that_fails_keeps_the_old() -> None:
    updating = _state(S).update("ep", "config-b", serving=True)
    assert (updating.status, updating.updating_to) == (U, "config-b")
    done = updating.updated(NEW)
    assert (done.config, done.variants, done.updating_to) == ("config-b", NEW.variants, None)
    kept = updating.update_failed("boom")
    assert (kept.config, kept.variants, kept.updating_to) == ("config-a", (BLUE,), None)


@pytest.mark.parametrize(
    ("status", "serving"),
    [(C, False), (U, True), (F, False), (D, False), (S, False)],  # InService but not yet brought up
)
def test_only_an_endpoint_in_service_may_be_updated(status: EndpointStatus, serving: bool) -> None:
    with pytest.raises(ValidationError, match=f"Cannot update endpoint 'ep' while it is {status}"):
        _state(status).update("ep", "config-b", serving=serving)
    with pytest.raises(ValidationError, match="Cannot update endpoint"):
        _state(status).rescale("ep", [BLUE], serving=serving)


def test_a_rescale_keeps_a_positive_weight() -> None:
    with pytest.raises(ValidationError, match="must keep a positive weight"):
        _state(S).rescale("ep", [VariantSpec("Blue", "model-a", 1, "ml.m5.large", 0.0)], serving=True)
    grown = _state(S, failure_reason="Scaling failed: x").rescale(
        "ep", [VariantSpec("Blue", "model-a", 3, "ml.m5.large", 1.0)], serving=True
    )
    assert (grown.status, grown.variants[0].instance_count, grown.failure_reason) == (U, 3, None)


@pytest.mark.parametrize(
    ("status", "updating_to", "serving", "step"),
    [
        (C, None, False, Step.BRING_UP),
        (S, None, False, Step.BRING_UP),  # after a server start
        (U, "config-b", False, Step.BRING_UP),  # the old config first, then the update
        (S, None, True, Step.WATCH),
        (U, "config-b", True, Step.ROLL_OUT),
        (U, None, True, Step.RESCALE),
        (F, None, False, Step.NOTHING),
        (D, None, False, Step.FINISH_DELETE),
        (D, None, True, Step.FINISH_DELETE),
    ],
)
def test_what_comes_next(status: EndpointStatus, updating_to: str | None, serving: bool, step: Step) -> None:
    assert _state(status, updating_to=updating_to).step(serving=serving) == step


def test_the_record_keeps_the_state_as_the_api_reads_it() -> None:
    state = _state(U, updating_to="config-b", failure_reason=None)
    record = state.to_record()
    assert record["variants"] == [
        {
            "name": "Blue",
            "model": "model-a",
            "instance_type": "ml.m5.large",
            "instance_count": 1,
            "weight": 1.0,
        }
    ]
    assert EndpointState.from_record("Updating", {**record, "owner": "alice"}) == state
