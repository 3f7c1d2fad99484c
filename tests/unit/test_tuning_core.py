"""Tuning: ranges, grid enumeration, the early-stopping rule, reverse-log sampling."""

import pytest

from shipyard.core.tuning import parse_ranges, should_stop_early
from shipyard.errors import ValidationError


def test_ranges_are_validated_with_the_range_named() -> None:
    with pytest.raises(ValidationError, match="'lr': MinValue 2 is greater than MaxValue 1"):
        parse_ranges({"ContinuousParameterRanges": [{"Name": "lr", "MinValue": "2", "MaxValue": "1"}]})
    with pytest.raises(ValidationError, match="'depth' needs whole bounds"):
        parse_ranges({"IntegerParameterRanges": [{"Name": "depth", "MinValue": "1.5", "MaxValue": "3"}]})
    with pytest.raises(ValidationError, match="ReverseLogarithmic scaling takes a Continuous range within"):
        parse_ranges(
            {
                "ContinuousParameterRanges": [
                    {
                        "Name": "momentum",
                        "MinValue": "0.5",
                        "MaxValue": "1",
                        "ScalingType": "ReverseLogarithmic",
                    }
                ]
            }
        )
    with pytest.raises(ValidationError, match="one range only"):
        parse_ranges(
            {
                "IntegerParameterRanges": [{"Name": "a", "MinValue": "1", "MaxValue": "2"}],
                "CategoricalParameterRanges": [{"Name": "a", "Values": ["x"]}],
            }
        )
    [kind] = parse_ranges({"CategoricalParameterRanges": [{"Name": "kind", "Values": ['"gbtree"', "dart"]}]})
    assert kind.values == ("gbtree", "dart")  # the SDK's JSON-encoded values, decoded


def test_median_rule() -> None:
    good = [[0.5, 0.6, 0.7], [0.5, 0.62, 0.7], [0.52, 0.6, 0.71]]
    assert should_stop_early([0.1, 0.2], good, maximize=True)
    assert not should_stop_early([0.6, 0.7], good, maximize=True)
    assert not should_stop_early([0.1, 0.2], good[:2], maximize=True)  # too few to compare
    assert not should_stop_early([0.1], good, maximize=True)  # too early
    assert should_stop_early([0.9, 0.9], good, maximize=False)


def test_reverse_logarithmic_samples_stay_in_range_and_crowd_towards_one() -> None:
    import optuna

    from shipyard.services.tuning import _distribution, _to_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    [momentum] = parse_ranges(
        {
            "ContinuousParameterRanges": [
                {
                    "Name": "momentum",
                    "MinValue": "0.5",
                    "MaxValue": "0.999",
                    "ScalingType": "ReverseLogarithmic",
                }
            ]
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = [
        _to_search(momentum, study.ask({"momentum": _distribution(momentum)}).params["momentum"])
        for _ in range(300)
    ]
    assert all(0.5 <= v <= 0.999 for v in values)
    assert sum(v > 0.9 for v in values) / len(values) > 0.6  # linear sampling would give 0.2
