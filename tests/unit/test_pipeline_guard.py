"""The budgets' launch guard lives in the services that create work, so every entry point (the
API, a pipeline's steps, tuning) passes it once: a create is refused before anything exists, and
a tuning job is asked about once, not for each trial it starts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from shipyard.compute import Backends
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.placement import Resources
from shipyard.envs import ImageResolver
from shipyard.errors import LimitExceededError, NotFoundError
from shipyard.services.jobs import TrainingService
from shipyard.services.tagging import TaggingService
from shipyard.services.tuning import TuningService
from shipyard.store import Database, TagRepository, TrainingJobRepository, TuningJobRepository
from shipyard.testing import FakeBackend, ManualClock
from tests.unit._services import params
from tests.unit.test_tuning_service import tuning_request


class RecordingGuard:
    """Records what it is asked; refuses the kinds in ``refuse``."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.asked: list[tuple[str, str, dict[str, str]]] = []
        self.refuse = refuse

    def __call__(
        self,
        kind: str,
        name: str,
        reckon: Any,
        request: Mapping[str, Any],
        tags: Mapping[str, str],
        *,
        owner: str | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        self.asked.append((kind, name, dict(tags)))
        if kind in self.refuse:
            raise LimitExceededError(f"Budget 'b' denies {kind} {name!r}")
        return contextlib.nullcontext()


@pytest.fixture
def services(
    tmp_path: Path, template_db: Path
) -> Iterator[tuple[TrainingService, TuningService, RecordingGuard]]:
    db_path = tmp_path / "shipyard.db"
    db_path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{db_path}")
    backends = Backends(FakeBackend(Resources(4, 16, 0), clock=ManualClock()))
    guard = RecordingGuard()
    training = TrainingService(
        TrainingJobRepository(db),
        InstanceCatalog.load(),
        TaggingService(TagRepository(db)),
        ImageResolver.load(tmp_path),
        account_id="000000000000",
        backend_for=backends.for_type,
        fit_to_machine=False,
        wake=lambda: None,
        guard=guard,
    )
    tuning = TuningService(TuningJobRepository(db), training, account_id="000000000000", guard=guard)
    yield training, tuning, guard
    db.engine.dispose()


def test_a_training_job_is_asked_about_once_with_its_tags(
    services: tuple[TrainingService, TuningService, RecordingGuard],
) -> None:
    training, _, guard = services
    training.create({**params("j"), "Tags": [{"Key": "team", "Value": "ml"}]}, region="eu-west-1")
    assert guard.asked == [("training job", "j", {"team": "ml"})]


def test_a_refused_create_leaves_nothing(
    services: tuple[TrainingService, TuningService, RecordingGuard],
) -> None:
    training, _, guard = services
    guard.refuse = ("training job",)
    with pytest.raises(LimitExceededError, match="denies training job 'j'"):
        training.create(params("j"), region="eu-west-1")
    with pytest.raises(NotFoundError):
        training.describe("j")


def test_a_tuning_job_is_asked_about_once_not_per_trial(
    services: tuple[TrainingService, TuningService, RecordingGuard],
) -> None:
    training, tuning, guard = services
    tuning.create(tuning_request("t", jobs=2, parallel=2), region="eu-west-1")
    tuning.tick()  # starts its trials through TrainingService.create
    assert len(training.repository.active()) == 2
    assert guard.asked == [("tuning job", "t", {})]
