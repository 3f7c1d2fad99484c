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


def test_a_small_machine_says_how_many_trials_fit_at_once() -> None:
    from shipyard.core.placement import Placement, Resources, parallel_note

    machine = Resources(2, 24)
    two_vcpus = Placement(Resources(2, 8), 1)
    note = parallel_note(two_vcpus, "ml.m5.large", 4, machine)
    assert note is not None and note.startswith(
        "1 of the 4 parallel trials run at once: each is 1 x ml.m5.large"
    )
    assert parallel_note(two_vcpus, "ml.m5.large", 2, Resources(4, 24)) is None  # overcommitted by 2
    assert parallel_note(two_vcpus, "ml.m5.large", 4, Resources(16, 16)).startswith("2 of the 4")  # memory
    assert parallel_note(
        Placement(Resources(1, 1, 1), 2), "ml.g5.xlarge", 3, Resources(64, 256, 4)
    ).startswith("2 of the 3")  # GPUs: two instances of one GPU each, four GPUs


def test_cpu_overcommit_multiplies_the_local_cores_and_is_checked() -> None:
    from shipyard.compute import machine_resources
    from shipyard.config import Settings
    from shipyard.errors import ConfigurationError
    from shipyard.services._platform import _backends

    settings = Settings.load({"cpu_overcommit": None}, environ={"SHIPYARD_CPU_OVERCOMMIT": "2"})
    assert settings.cpu_overcommit == 2.0
    backends = _backends(settings)
    assert backends.default.capacity.cpus == machine_resources().cpus * 2
    backends.default.close()
    with pytest.raises(ConfigurationError, match="cpu_overcommit must be a number, got 'lots'"):
        Settings.load(environ={"SHIPYARD_CPU_OVERCOMMIT": "lots"})
    with pytest.raises(ConfigurationError, match=r"cpu_overcommit must be between 1 and 16, got 0\.5"):
        Settings.load(environ={"SHIPYARD_CPU_OVERCOMMIT": "0.5"})
