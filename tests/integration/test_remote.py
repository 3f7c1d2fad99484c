"""``@remote``: a local function called as a training job, against a real server.

The jobs run in the sklearn environment (plus cloudpickle, added by the SDK), so the functions
import sklearn inside their bodies: this test process does not have it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import shipyard
from shipyard.errors import ValidationError
from shipyard.sdk._remote import RemoteError, remote
from shipyard.server import ServerProcess
from tests._support import boto_client

FEATURES = """\
import numpy as np


def standardize(x):
    x = np.asarray(x, dtype=float)
    return (x - x.mean(axis=0)) / x.std(axis=0)
"""

MODEL = """\
import dataclasses

from .features import standardize


@dataclasses.dataclass
class Score:
    accuracy: float
    features: int


def fit_score(c, n=200):
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=n, random_state=0)
    model = LogisticRegression(C=c).fit(standardize(x), y)
    return Score(float(model.score(standardize(x), y)), int(model.coef_.shape[1]))
"""


class Unrebuildable(Exception):
    """Pickles, but cannot be unpickled (its __init__ takes two arguments, its args hold one)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


@pytest.fixture
def mltools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A local package (not installed anywhere) of two modules, imported from its folder."""
    package = tmp_path / "lib" / "mltools"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Local helpers."""\n')
    (package / "features.py").write_text(FEATURES)
    (package / "model.py").write_text(MODEL)
    (package / ".cache").mkdir()
    (package / ".cache" / "junk.py").write_text("raise SystemExit('not shipped')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    import mltools.features
    import mltools.model  # noqa: F401

    yield sys.modules["mltools"]
    for name in [n for n in sys.modules if n == "mltools" or n.startswith("mltools.")]:
        del sys.modules[name]


def test_a_remote_function_returns_its_value_computed_with_local_code(
    server: ServerProcess, mltools: ModuleType
) -> None:
    from mltools.features import standardize
    from mltools.model import Score, fit_score

    connection = shipyard.connect(server.url)

    @remote(connection=connection, tags={"Project": "remote"})
    def accuracy(c: float, *, n: int = 200) -> dict[str, Any]:
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression

        x, y = make_classification(n_samples=n, random_state=1)
        model = LogisticRegression(C=c).fit(standardize(x), y)  # the helper, imported in the job
        return {"accuracy": float(model.score(standardize(x), y)), "rows": len(x)}

    # The package's own function, undecorated, started without waiting (both jobs run at once).
    call = remote(fit_score, connection=connection, logs=False).submit(0.5, n=300)
    result = accuracy(0.5, n=300)
    assert result["rows"] == 300 and 0.7 < result["accuracy"] <= 1.0

    score = call.result()
    assert isinstance(score, Score)  # a class of the caller's module comes back as itself
    assert score.features == 20 and 0.7 < score.accuracy <= 1.0
    assert call.done() and call.job.status == "Completed"
    described = call.job.describe()
    assert described["HyperParameters"]["function"] == "mltools.model:fit_score"

    sm = boto_client("sagemaker", server.url)
    arn = sm.list_training_jobs(NameContains="remote-accuracy")["TrainingJobSummaries"][0]["TrainingJobArn"]
    assert {"Key": "Project", "Value": "remote"} in sm.list_tags(ResourceArn=arn)["Tags"]


def test_an_exception_is_raised_here_with_the_remote_traceback(server: ServerProcess) -> None:
    connection = shipyard.connect(server.url)

    @remote(connection=connection, logs=False)
    def check(n: int) -> int:
        def validate(value: int) -> int:
            if value < 0:
                raise ValueError(f"n must be >= 0, got {value}")
            return value

        return validate(n)

    @remote(connection=connection, logs=False)
    def odd() -> None:
        raise Unrebuildable(7, "no way back")

    failing, unrebuildable = check.submit(-3), odd.submit()
    with pytest.raises(ValueError, match=r"n must be >= 0, got -3") as info:
        failing.result()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert f"Remote traceback (Shipyard training job {failing.job.name})" in notes
    assert __file__ in notes and "in validate" in notes  # the caller's file names and lines
    assert 'raise ValueError(f"n must be >= 0, got {value}")' in notes
    assert failing.job.status == "Failed"
    reason = failing.job.failure_reason or ""
    assert reason.startswith("AlgorithmError: ValueError: n must be >= 0, got -3"), reason
    assert "in validate" in reason

    with pytest.raises(RemoteError, match="could not be pickled in the job, or rebuilt") as odd_info:
        unrebuildable.result()
    assert (
        odd_info.value.remote_traceback and "Unrebuildable: 7: no way back" in odd_info.value.remote_traceback
    )
    assert odd_info.value.status == "Failed"


def test_what_cannot_be_sent_is_refused_before_any_job_starts(server: ServerProcess) -> None:
    connection = shipyard.connect(server.url)

    @remote(connection=connection)
    def use(lock: Any, n: int = 1) -> int:
        return n

    with pytest.raises(ValidationError, match=r"argument 'lock' of .*use cannot be sent") as info:
        use(threading.Lock())
    assert info.value.field == "lock" and "_thread.lock" in info.value.message

    held = threading.Lock()

    @remote(connection=connection)
    def closes_over() -> bool:
        return held.locked()

    with pytest.raises(ValidationError, match="closes_over itself") as info:
        closes_over()
    assert info.value.field == "func"
    with pytest.raises(TypeError, match="missing a required argument"):
        use()  # type: ignore[call-arg]  # a wrong call fails here, as it would locally

    def numbers() -> Iterator[int]:
        yield 1

    for bad, message in [
        (42, "not a function"),
        ("ml.m5.large", "options are keywords"),
        (numbers, "generator"),
    ]:
        with pytest.raises(ValidationError, match=message):
            remote(bad)  # type: ignore[call-overload]
    with pytest.raises(ValidationError, match="framework 'cobol'"):
        remote(framework="cobol")
    sm = boto_client("sagemaker", server.url)
    assert not sm.list_training_jobs(NameContains="remote-use")["TrainingJobSummaries"]
    assert not sm.list_training_jobs(NameContains="remote-closes-over")["TrainingJobSummaries"]
