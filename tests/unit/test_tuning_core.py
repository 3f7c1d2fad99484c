"""Tuning: ranges, grid enumeration, the early-stopping rule, reverse-log sampling, Hyperband,
several training job definitions."""

import dataclasses

import pytest

from shipyard.core.tuning import (
    SamplerChoice,
    SamplerKind,
    TuningJobSpec,
    choose_sampler,
    parse_ranges,
    should_stop_early,
)
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


def _request(**config: object) -> dict[str, object]:
    definition = {
        "StaticHyperParameters": {"epochs": "27"},
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::000000000000:role/R",
        "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    return {
        "HyperParameterTuningJobName": "t",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Hyperband",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "acc"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 10, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0", "MaxValue": "1"}]
            },
            **config,
        },
        "TrainingJobDefinition": definition,
    }


def test_hyperband_resources_come_from_the_config_or_the_epochs() -> None:
    from shipyard.core.tuning import TuningJobSpec

    spec = TuningJobSpec.from_request(_request())
    assert spec.hyperband is not None and (spec.hyperband.min_resource, spec.hyperband.max_resource) == (
        1,
        27,
    )
    spec = TuningJobSpec.from_request(
        _request(StrategyConfig={"HyperbandStrategyConfig": {"MinResource": 2, "MaxResource": 18}})
    )
    assert spec.hyperband is not None and (spec.hyperband.min_resource, spec.hyperband.max_resource) == (
        2,
        18,
    )
    with pytest.raises(ValidationError, match="MinResource <= MaxResource") as bad:
        TuningJobSpec.from_request(
            _request(StrategyConfig={"HyperbandStrategyConfig": {"MinResource": 5, "MaxResource": 3}})
        )
    assert bad.value.field == "HyperParameterTuningJobConfig.StrategyConfig.HyperbandStrategyConfig"
    with pytest.raises(ValidationError, match="must be Off with Strategy Hyperband"):
        TuningJobSpec.from_request(_request(TrainingJobEarlyStoppingType="Auto"))
    request = _request()
    request["TrainingJobDefinition"]["StaticHyperParameters"] = {}  # type: ignore[index]
    with pytest.raises(ValidationError, match="needs MaxResource"):
        TuningJobSpec.from_request(request)


def test_hyperband_brackets_rungs_and_promotions() -> None:
    from shipyard.core.tuning import Hyperband

    band = Hyperband(1, 27)
    assert band.brackets == 4
    assert [band.rungs(b) for b in range(4)] == [[1, 3, 9], [3, 9], [9], []]
    counts = [sum(band.bracket_of(n) == b for n in range(1000)) for b in range(4)]
    assert counts[0] > counts[1] > counts[2] > counts[3] > 0  # aggressive brackets get more trials
    first = [n for n in range(100) if band.bracket_of(n) == 0][:4]
    # Three trials reached step 1 of bracket 0 before the fourth: only the best third goes on.
    curves = {
        first[0]: [(0.9, 1.0)],
        first[1]: [(0.5, 2.0)],
        first[2]: [(0.4, 3.0)],
        first[3]: [(0.6, 4.0)],
    }
    assert not band.should_stop(first[0], curves, maximize=True)  # the first is the best so far
    assert band.should_stop(first[1], curves, maximize=True)  # worse than the one before it
    assert band.should_stop(first[3], curves, maximize=True)  # not in the best third of four
    assert not band.should_stop(first[2], curves, maximize=False)  # minimizing: the best of three
    assert band.should_stop(first[3], curves, maximize=False)  # minimizing: 0.6 is not in the best third
    # Decided as of when it got there: a later, better trial does not undo an earlier promotion.
    curves[first[0]] = [(0.9, 1.0), (0.95, 5.0)]
    curves[99_999] = [(2.0, 9.0)]
    assert not band.should_stop(first[0], curves, maximize=True)
    last = next(n for n in range(100) if band.bracket_of(n) == 3)
    assert not band.should_stop(last, {last: [(0.0, 1.0)] * 27, **curves}, maximize=True)  # no rungs


def test_several_training_job_definitions() -> None:
    from shipyard.core.tuning import TuningJobSpec

    request = _request(Strategy="Grid")
    del request["HyperParameterTuningJobConfig"]["ParameterRanges"]  # type: ignore[attr-defined]
    base = request.pop("TrainingJobDefinition")
    request["TrainingJobDefinitions"] = [
        {
            **base,  # type: ignore[dict-item]
            "DefinitionName": "small",
            "TuningObjective": {"Type": "Maximize", "MetricName": "acc"},
            "HyperParameterRanges": {
                "IntegerParameterRanges": [{"Name": "depth", "MinValue": "1", "MaxValue": "3"}]
            },
        },
        {
            **base,  # type: ignore[dict-item]
            "DefinitionName": "big",
            "TuningObjective": {"Type": "Maximize", "MetricName": "validation:acc"},
            "HyperParameterRanges": {"CategoricalParameterRanges": [{"Name": "kind", "Values": ["a", "b"]}]},
        },
    ]
    spec = TuningJobSpec.from_request(request)
    assert spec.max_jobs == 5  # the grids of both
    points = [spec.grid_point(n) for n in range(5)]
    assert [(d.name, v) for d, v in points] == [
        ("small", {"depth": 1}),
        ("small", {"depth": 2}),
        ("small", {"depth": 3}),
        ("big", {"kind": "a"}),
        ("big", {"kind": "b"}),
    ]
    assert spec.definition("big").objective_metric == "validation:acc"
    request["TrainingJobDefinitions"][1]["TuningObjective"]["Type"] = "Minimize"  # type: ignore[index]
    with pytest.raises(ValidationError, match="'big' would Minimize it"):
        TuningJobSpec.from_request(request)


def _spec_for_sampler(
    strategy: str = "Bayesian", *, jobs: int = 40, parallel: int = 1, **ranges: object
) -> TuningJobSpec:
    request = _request(Strategy=strategy)
    config: dict[str, object] = request["HyperParameterTuningJobConfig"]  # type: ignore[assignment]
    config["ResourceLimits"] = {"MaxNumberOfTrainingJobs": jobs, "MaxParallelTrainingJobs": parallel}
    if ranges:
        config["ParameterRanges"] = ranges
    return TuningJobSpec.from_request(request)


def _continuous(count: int) -> list[dict[str, str]]:
    return [{"Name": f"x{i}", "MinValue": "0", "MaxValue": "1"} for i in range(count)]


def test_the_sampler_is_chosen_by_the_search_space_and_the_parallelism() -> None:
    def choose(strategy: str = "Bayesian", **kw: object) -> SamplerChoice:
        return choose_sampler(_spec_for_sampler(strategy, **kw))  # type: ignore[arg-type]

    # A few numbers: a Gaussian process, a handful of random trials first.
    gp = choose(
        ContinuousParameterRanges=_continuous(4),
        IntegerParameterRanges=[{"Name": "depth", "MinValue": "1", "MaxValue": "10"}],
    )
    assert gp.kind == SamplerKind.GP and gp.startup_trials == 10  # two per range
    in_flight = choose(
        parallel=4,
        ContinuousParameterRanges=_continuous(4),
        IntegerParameterRanges=[{"Name": "depth", "MinValue": "1", "MaxValue": "10"}],
    )
    assert in_flight.kind == SamplerKind.GP and in_flight.startup_trials == 7  # 3 launched blind anyway
    assert choose(jobs=300, parallel=4).kind == SamplerKind.GP
    # Categorical ranges too: the GP's kernel compares their values by equality.
    categorical = choose(
        parallel=4,
        ContinuousParameterRanges=_continuous(2),
        CategoricalParameterRanges=[{"Name": "kernel", "Values": ["rbf", "linear"]}],
    )
    assert categorical.kind == SamplerKind.GP and categorical.startup_trials == 3  # 6 less 3 in flight
    assert "3 ranges" in categorical.describe()
    # A large space, many trials: multivariate TPE, with constant liar in parallel.
    large = choose(ContinuousParameterRanges=_continuous(11))
    assert large.kind == SamplerKind.TPE and not large.constant_liar
    assert "11 ranges" in large.describe()
    large_in_flight = choose(parallel=2, ContinuousParameterRanges=_continuous(11))
    assert large_in_flight.kind == SamplerKind.TPE and large_in_flight.constant_liar
    many = choose(jobs=301)
    assert many.kind == SamplerKind.TPE and many.startup_trials == 10
    # Several definitions make a conditional space: TPE.
    spec = _spec_for_sampler()
    [definition] = spec.definitions
    several = dataclasses.replace(
        spec, definitions=(definition, dataclasses.replace(definition, name="other"))
    )
    assert choose_sampler(several).kind == SamplerKind.TPE
    assert "several training job definitions" in choose_sampler(several).describe()
    # Stopped trials inform TPE: Hyperband and early stopping keep it.
    assert choose("Hyperband").kind == SamplerKind.TPE
    assert choose_sampler(dataclasses.replace(spec, early_stopping=True)).kind == SamplerKind.TPE
    assert choose("Random").kind == SamplerKind.RANDOM
    # Without torch and scipy, TPE takes the GP's place and says why.
    fallback = choose_sampler(spec, gp_available=False)
    assert fallback.kind == SamplerKind.TPE and "torch" in fallback.describe()
    assert fallback.startup_trials == 5  # MaxNumberOfTrainingJobs / 8
    with pytest.raises(ValueError, match="Grid"):
        choose_sampler(
            _spec_for_sampler(
                "Grid", IntegerParameterRanges=[{"Name": "d", "MinValue": "1", "MaxValue": "2"}]
            )
        )
