"""The notebook instances' table (migration 0016) on a real SQLite file and on the local Postgres."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.core.notebooks import NotebookInstance, NotebookStatus
from shipyard.errors import ConflictError, NotFoundError, ValidationError
from shipyard.store import Database
from shipyard.store.notebooks import NotebookRepository

T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path}/meta/shipyard.db")
    else:
        database = Database(request.getfixturevalue("postgres_url"))
        with database.engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    database.upgrade()
    yield database
    database.dispose()


def _notebook(name: str, created: dt.datetime = T0) -> NotebookInstance:
    return NotebookInstance(
        name=name,
        arn=f"arn:aws:sagemaker:us-east-1:000000000000:notebook-instance/{name}",
        region="us-east-1",
        status=NotebookStatus.PENDING,
        request={
            "NotebookInstanceName": name,
            "InstanceType": "ml.t3.medium",
            "RoleArn": "arn:aws:iam::000000000000:role/R",
        },
        created=created,
        last_modified=created,
        owner="arn:aws:iam::000000000000:user/ada",
    )


def test_a_notebook_is_kept_changed_and_deleted(db: Database) -> None:
    notebooks = NotebookRepository(db)
    notebooks.create(_notebook("second", T0 + dt.timedelta(seconds=1)))
    notebooks.create(_notebook("first"))
    with pytest.raises(ConflictError) as duplicate:
        notebooks.create(_notebook("first"))
    assert isinstance(duplicate.value, ValidationError) and "duplicate" in duplicate.value.message
    assert [n.name for n in notebooks.all()] == ["first", "second"]
    changed = notebooks.modify(
        "first",
        lambda n: n.with_status(
            NotebookStatus.IN_SERVICE,
            T0 + dt.timedelta(minutes=1),
            in_service_since=T0,
            url="http://127.0.0.1:1",
        ),
    )
    found = notebooks.get("first")
    assert found == changed
    assert found.status == NotebookStatus.IN_SERVICE and found.in_service_since == T0
    assert found.owner == "arn:aws:iam::000000000000:user/ada"

    def refuse(n: NotebookInstance) -> NotebookInstance:
        raise ValidationError("no", field="x")

    with pytest.raises(ValidationError):
        notebooks.modify("first", refuse)
    assert notebooks.get("first") == found  # nothing written
    notebooks.modify("first", lambda n: dataclasses.replace(n, request={**n.request, "VolumeSizeInGB": 20}))
    assert notebooks.get("first").volume_gb == 20
    notebooks.delete("first")
    with pytest.raises(NotFoundError):
        notebooks.get("first")
