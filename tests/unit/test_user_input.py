"""What a new user types, refused clearly: a metric regex that cannot give a value, and a tuning
spec's numbers and switches that are not what they must be (each naming the field)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipyard.cli._launch import _spec_settings
from shipyard.core.training import check_metric_regex
from shipyard.errors import ValidationError


def test_a_metric_regex_must_compile_and_capture_the_value() -> None:
    check_metric_regex("validation:auc", r"validation-auc=([0-9.]+)", "metrics")
    with pytest.raises(
        ValidationError, match=r"Metric 'auc': its regex 'auc=\(\[0-9\.\]\+' does not compile"
    ) as bad:
        check_metric_regex("auc", "auc=([0-9.]+", "metrics['auc']")
    assert bad.value.field == "metrics['auc']"
    with pytest.raises(ValidationError, match=r"no capture group for the value, e\.g\. auc="):
        check_metric_regex("auc", "auc=[0-9.]+", "metrics['auc']")


def test_the_sdk_refuses_such_a_metric_before_anything_is_sent(tmp_path: Path) -> None:
    import shipyard

    (tmp_path / "train.py").write_text("print('auc=0.9')\n")
    with pytest.raises(ValidationError, match="Metric 'auc'"):
        shipyard.Estimator(tmp_path / "train.py", metrics={"auc": "auc=[0-9.]+"})


def test_spec_settings_have_their_defaults() -> None:
    assert _spec_settings({}) == {
        "instance_count": 1,
        "max_run": 86400,
        "max_trials": 10,
        "parallel": 1,
        "seed": None,
        "maximize": True,
        "early_stopping": False,
    }
    assert _spec_settings({"max_trials": 40, "parallel": 4, "seed": 7, "maximize": False})["seed"] == 7


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("max_trials", "ten", "max_trials must be a whole number, not 'ten'"),
        ("parallel", 2.5, "parallel must be a whole number, not 2.5"),
        ("max_run", True, "max_run must be a whole number, not True"),
        ("seed", "abc", "seed must be a whole number, not 'abc'"),
        ("instance_count", None, "instance_count must be a whole number, not None"),
        ("maximize", "perhaps", "maximize must be true or false, not 'perhaps'"),
        ("early_stopping", 1, "early_stopping must be true or false, not 1"),
    ],
)
def test_spec_settings_name_what_is_wrong(setting: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as bad:
        _spec_settings({setting: value})
    assert str(bad.value.message) == message and bad.value.field == setting
