"""Search quality of tuning: does Bayesian reach what Random finds, in clearly fewer trials?

    bash benchmarks/setup-venv
    benchmarks/.venv/bin/python benchmarks/tuning_quality.py [--trials 40] [--seeds 10] [--only NAME] [--workers 2]

Runs the tuning service's own search (``TuningService._ask``: the study rebuilt from the trials,
the sampler ``core.tuning.choose_sampler`` picks — a Gaussian process or multivariate TPE — or random
sampling, seeded per trial) without launching jobs: each trial's
objective is computed directly. Problems: standard test functions, and real model tuning on data
sets scikit-learn ships — XGBoost on breast cancer (validation log loss) and an SVC on digits
(validation error) — each on a fixed train/validation split. For each problem and seed, Random's
best value after N trials is the bar; reported is how many trials Bayesian needed to reach it
(N+ when it never did), median over seeds — sequentially and with 4 trials in flight at a time
(the parallel case, where the sampler must spread the trials in flight). The goal, checked on each
row: at most N/2 (twice as few trials as Random); each row also lists every seed's count.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import statistics
from collections.abc import Callable
from typing import Any

from shipyard.core.tuning import Trial, TuningJob, TuningJobSpec, TuningJobStatus
from shipyard.services.tuning import TrialView, TuningService


def branin(p: dict[str, Any]) -> float:
    x, y = p["x"], p["y"]
    return (
        (y - 5.1 / (4 * math.pi**2) * x**2 + 5 / math.pi * x - 6) ** 2
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x)
        + 10
    )


def hartmann3(p: dict[str, Any]) -> float:
    alpha = [1.0, 1.2, 3.0, 3.2]
    a = [[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]]
    pp = [
        [0.3689, 0.1170, 0.2673],
        [0.4699, 0.4387, 0.7470],
        [0.1091, 0.8732, 0.5547],
        [0.0381, 0.5743, 0.8828],
    ]
    x = [p["x1"], p["x2"], p["x3"]]
    return -sum(
        alpha[i] * math.exp(-sum(a[i][j] * (x[j] - pp[i][j]) ** 2 for j in range(3))) for i in range(4)
    )


def rosenbrock4(p: dict[str, Any]) -> float:
    x = [p[f"x{i}"] for i in range(4)]
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(3))


def mixed(p: dict[str, Any]) -> float:
    """A model-selection-like problem: a log-scaled rate, an integer depth, a categorical choice."""
    bonus = {"gbtree": 0.0, "dart": 0.05, "gblinear": 0.4}[p["booster"]]
    return (math.log10(p["eta"]) + 1.3) ** 2 + 0.03 * (p["depth"] - 6) ** 2 + bonus


def continuous(name: str, low: float, high: float, scaling: str = "Linear") -> dict[str, str]:
    return {"Name": name, "MinValue": str(low), "MaxValue": str(high), "ScalingType": scaling}


def _split(loader: str) -> Any:
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    x, y = getattr(datasets, loader)(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


_DATA: dict[str, Any] = {}


def xgboost_breast_cancer(p: dict[str, Any]) -> float:
    import xgboost
    from sklearn.metrics import log_loss

    x_train, x_valid, y_train, y_valid = _DATA.setdefault("cancer", _split("load_breast_cancer"))
    model = xgboost.XGBClassifier(
        n_estimators=60,
        learning_rate=p["eta"],
        max_depth=p["max_depth"],
        min_child_weight=p["min_child_weight"],
        subsample=p["subsample"],
        reg_lambda=p["lambda"],
        n_jobs=1,
        random_state=0,
    )
    model.fit(x_train, y_train)
    return float(log_loss(y_valid, model.predict_proba(x_valid)))


def svc_digits(p: dict[str, Any]) -> float:
    from sklearn.svm import SVC

    x_train, x_valid, y_train, y_valid = _DATA.setdefault("digits", _split("load_digits"))
    model = SVC(C=p["C"], gamma=p["gamma"], kernel=p["kernel"]).fit(x_train, y_train)
    return 1 - float(model.score(x_valid, y_valid))


PROBLEMS: dict[str, tuple[Callable[[dict[str, Any]], float], dict[str, Any]]] = {
    "branin": (branin, {"ContinuousParameterRanges": [continuous("x", -5, 10), continuous("y", 0, 15)]}),
    "hartmann3": (hartmann3, {"ContinuousParameterRanges": [continuous(f"x{i}", 0, 1) for i in (1, 2, 3)]}),
    "rosenbrock4": (
        rosenbrock4,
        {"ContinuousParameterRanges": [continuous(f"x{i}", -2, 2) for i in range(4)]},
    ),
    "mixed": (
        mixed,
        {
            "ContinuousParameterRanges": [continuous("eta", 0.001, 1, "Logarithmic")],
            "IntegerParameterRanges": [{"Name": "depth", "MinValue": "1", "MaxValue": "12"}],
            "CategoricalParameterRanges": [{"Name": "booster", "Values": ["gbtree", "dart", "gblinear"]}],
        },
    ),
    "xgb-cancer": (
        xgboost_breast_cancer,
        {
            "ContinuousParameterRanges": [
                continuous("eta", 0.005, 1, "Logarithmic"),
                continuous("min_child_weight", 0.1, 20, "Logarithmic"),
                continuous("subsample", 0.4, 1),
                continuous("lambda", 0.01, 100, "Logarithmic"),
            ],
            "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "1", "MaxValue": "10"}],
        },
    ),
    "svc-digits": (
        svc_digits,
        {
            "ContinuousParameterRanges": [
                continuous("C", 0.01, 1000, "Logarithmic"),
                continuous("gamma", 1e-6, 1, "Logarithmic"),
            ],
            "CategoricalParameterRanges": [{"Name": "kernel", "Values": ["rbf", "sigmoid"]}],
        },
    ),
}


def spec_for(ranges: dict[str, Any], strategy: str, trials: int, parallel: int, seed: int) -> TuningJobSpec:
    return TuningJobSpec.from_request(
        {
            "HyperParameterTuningJobName": "bench",
            "HyperParameterTuningJobConfig": {
                "Strategy": strategy,
                "RandomSeed": seed,
                "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "loss"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": trials, "MaxParallelTrainingJobs": parallel},
                "ParameterRanges": ranges,
            },
            "TrainingJobDefinition": {
                "AlgorithmSpecification": {
                    "TrainingImage": "x",
                    "MetricDefinitions": [{"Name": "loss", "Regex": "x"}],
                },
                "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            },
        }
    )


def run(objective: Callable[[dict[str, Any]], float], spec: TuningJobSpec, parallel: int) -> list[float]:
    """The objective of each trial, in launch order, with ``parallel`` trials in flight at a time."""
    service = TuningService(None, None, account_id="0")  # type: ignore[arg-type]
    job = TuningJob(spec, "arn", None, TuningJobStatus.IN_PROGRESS)
    views: list[TrialView] = []
    values: list[float] = []
    while len(views) < spec.max_jobs:
        batch = []
        for _ in range(min(parallel, spec.max_jobs - len(views))):
            number = len(views)
            definition, params = service._ask(job, views, number)
            trial = Trial(number, f"t{number}", {r.name: r.format(params[r.name]) for r in definition.ranges})
            views.append(TrialView(trial, None, None))  # running: the liar sees it
            batch.append((len(views) - 1, params))
        for index, params in batch:
            value = objective(params)
            values.append(value)
            views[index] = TrialView(views[index].trial, None, value)
    return values


def trials_to_reach(values: list[float], bar: float) -> int | None:
    best = math.inf
    for count, value in enumerate(values, start=1):
        best = min(best, value)
        if best <= bar:
            return count
    return None


def measure(name: str, parallel: int, seed: int, trials: int) -> tuple[float, float, int]:
    """One seed of one row: Random's best after ``trials``, Bayesian's, and the trials Bayesian
    needed to reach Random's best (``trials + 1`` when it never did)."""
    objective, ranges = PROBLEMS[name]
    random_values = run(objective, spec_for(ranges, "Random", trials, parallel, seed), parallel)
    bayes_values = run(objective, spec_for(ranges, "Bayesian", trials, parallel, seed), parallel)
    bar = min(random_values)
    reached = trials_to_reach(bayes_values, bar)
    return bar, min(bayes_values), reached if reached is not None else trials + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--only", help="run only the problems whose name contains this")
    parser.add_argument("--workers", type=int, default=1, help="seeds measured in this many processes")
    args = parser.parse_args()
    goal = args.trials // 2  # at least twice as few trials as Random
    rows = [
        (name, parallel) for name in PROBLEMS if not args.only or args.only in name for parallel in (1, 4)
    ]
    print(
        f"{'problem':12} {'parallel':>8} {'random best':>12} {'bayes best':>11} "
        f"{'bayes trials to reach random@' + str(args.trials):>31} {'goal <= ' + str(goal):>10}   per seed"
    )
    met = 0
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        futures = {
            row: [pool.submit(measure, *row, seed, args.trials) for seed in range(args.seeds)] for row in rows
        }
        for (name, parallel), row_futures in futures.items():
            results = [f.result() for f in row_futures]
            needed = sorted(n for _, _, n in results)
            median = statistics.median(needed)
            met += median <= goal
            label = f"{median:.0f}" if median <= args.trials else f"{args.trials}+"
            seeds = " ".join(str(n) if n <= args.trials else f"{args.trials}+" for n in needed)
            print(
                f"{name:12} {parallel:8d} {statistics.median(r for r, _, _ in results):12.4f} "
                f"{statistics.median(b for _, b, _ in results):11.4f} {label:>31} "
                f"{'met' if median <= goal else 'MISSED':>10}   {seeds}",
                flush=True,
            )
    print(
        f"Bayesian reached Random's best after {args.trials} trials in at most {goal} "
        f"(median of {args.seeds} seeds) in {met} of {len(rows)} rows"
    )


if __name__ == "__main__":
    main()
