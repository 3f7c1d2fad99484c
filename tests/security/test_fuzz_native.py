"""Fuzzing the native API from its own OpenAPI document (schemathesis): valid and invalid
parameters and bodies for every operation of ``/api/v1/openapi.json``; no answer is a 5xx.

The whole app serves the calls (in process, its platform open, no background work), so its
request plumbing (body limits, replay) is fuzzed with the routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi

from shipyard.api.app import ShipyardApp
from shipyard.api.native import create_native_app
from shipyard.config import Settings
from tests.security import _fuzz

EXAMPLES = 10  # per operation, positive and negative cases together


# The document is the native app's own (no platform needed to write it); the whole app answers,
# through the client of the fixture below.
schema = schemathesis.openapi.from_dict(create_native_app().openapi())
schema.config.generation.update(
    modes=["positive", "negative"], max_examples=EXAMPLES, deterministic=True, database="none"
)


@pytest.fixture(scope="module")
def native_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Schemathesis' in-process client of the whole app (it runs the app's lifespan once)."""
    app = ShipyardApp(Settings(data_dir=tmp_path_factory.mktemp("native-fuzz")), background=False)
    with asgi.get_client(app) as client:
        yield client
    _fuzz.flush()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_no_native_call_answers_5xx(case: Any, native_client: Any) -> None:
    answer = case.call(session=native_client)
    _fuzz.record("native", answer.status_code)
    assert answer.status_code < 500, (
        f"{case.method} {case.formatted_path} {case.query} {case.body!r}: "
        f"{answer.status_code} {answer.text[:500]}"
    )
