"""SageMaker's built-in XGBoost algorithm: its hyperparameters and metric definitions.

Pure rules, checked at CreateTrainingJob so a bad hyperparameter is refused before anything runs;
the algorithm itself runs in the job (``runtime/algorithms/xgboost_train.py``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from shipyard.errors import ValidationError

OBJECTIVES = (
    "reg:squarederror",
    "reg:squaredlogerror",
    "reg:logistic",
    "reg:pseudohubererror",
    "reg:absoluteerror",
    "reg:quantileerror",
    "reg:linear",
    "binary:logistic",
    "binary:logitraw",
    "binary:hinge",
    "count:poisson",
    "survival:cox",
    "survival:aft",
    "multi:softmax",
    "multi:softprob",
    "rank:pairwise",
    "rank:ndcg",
    "rank:map",
    "reg:gamma",
    "reg:tweedie",
)
EVAL_METRICS = (
    "rmse",
    "rmsle",
    "mae",
    "mape",
    "mphe",
    "logloss",
    "error",
    "merror",
    "mlogloss",
    "auc",
    "aucpr",
    "ndcg",
    "map",
    "poisson-nloglik",
    "gamma-nloglik",
    "cox-nloglik",
    "gamma-deviance",
    "tweedie-nloglik",
    "aft-nloglik",
    "interval-regression-accuracy",
)


@dataclasses.dataclass(frozen=True)
class Param:
    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    low_open: bool = False


_I, _F, _S = int, float, str
HYPERPARAMETERS: dict[str, Param] = {
    "num_round": Param(_I, 1),
    "num_class": Param(_I, 1),
    "early_stopping_rounds": Param(_I, 1),
    "csv_weights": Param(_I, 0, 1),
    "objective": Param(_S, choices=OBJECTIVES),
    "eval_metric": Param(_S),
    "booster": Param(_S, choices=("gbtree", "gblinear", "dart")),
    "eta": Param(_F, 0, 1),
    "gamma": Param(_F, 0),
    "max_depth": Param(_I, 0),
    "min_child_weight": Param(_F, 0),
    "max_delta_step": Param(_F, 0),
    "subsample": Param(_F, 0, 1, low_open=True),
    "colsample_bytree": Param(_F, 0, 1, low_open=True),
    "colsample_bylevel": Param(_F, 0, 1, low_open=True),
    "colsample_bynode": Param(_F, 0, 1, low_open=True),
    "lambda": Param(_F, 0),
    "alpha": Param(_F, 0),
    "tree_method": Param(_S, choices=("auto", "exact", "approx", "hist", "gpu_hist")),
    "device": Param(_S),  # cpu, cuda, cuda:<n> (XGBoost 2.0 on); on a GPU type cuda by default
    "sketch_eps": Param(_F, 0, 1, low_open=True),
    "scale_pos_weight": Param(_F, 0, low_open=True),
    "updater": Param(_S),
    "refresh_leaf": Param(_I, 0, 1),
    "process_type": Param(_S, choices=("default", "update")),
    "grow_policy": Param(_S, choices=("depthwise", "lossguide")),
    "max_leaves": Param(_I, 0),
    "max_bin": Param(_I, 2),
    "num_parallel_tree": Param(_I, 1),
    "sample_type": Param(_S, choices=("uniform", "weighted")),
    "normalize_type": Param(_S, choices=("tree", "forest")),
    "rate_drop": Param(_F, 0, 1),
    "one_drop": Param(_I, 0, 1),
    "skip_drop": Param(_F, 0, 1),
    "lambda_bias": Param(_F, 0, 1),
    "tweedie_variance_power": Param(_F, 1, 2, low_open=True),
    "base_score": Param(_F),
    "seed": Param(_I),
    "nthread": Param(_I, 1),
    "verbosity": Param(_I, 0, 3),
    "max_cat_to_onehot": Param(_I, 1),
    "interaction_constraints": Param(_S),
    "monotone_constraints": Param(_S),
    "deterministic_histogram": Param(_S, choices=("true", "false")),
    "single_precision_histogram": Param(_S, choices=("true", "false")),
    "use_dask_gpu_training": Param(_S, choices=("true", "false")),
}


def validate_hyperparameters(raw: Mapping[str, str]) -> dict[str, Any]:
    """Check and convert the algorithm's hyperparameters; ValidationError naming the bad one.

    Values arrive as strings (the SDK may JSON-encode them); ``sagemaker_*`` ones are the platform's.
    """
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name.startswith("sagemaker_") or name.startswith("_"):
            continue
        param = HYPERPARAMETERS.get(name)
        if param is None:
            raise ValidationError(
                f"Hyperparameter {name!r} is not one the built-in XGBoost algorithm takes; it takes: "
                + ", ".join(sorted(HYPERPARAMETERS)),
                field=f"HyperParameters.{name}",
                value=text,
            )
        values[name] = _convert(name, text, param)
    if "num_round" not in values:
        raise ValidationError(
            "Hyperparameter 'num_round' is required by the built-in XGBoost algorithm",
            field="HyperParameters.num_round",
        )
    objective = values.get("objective", "reg:squarederror")
    if objective.startswith("multi:") and "num_class" not in values:
        raise ValidationError(
            f"Hyperparameter 'num_class' is required with objective {objective!r}",
            field="HyperParameters.num_class",
        )
    for metric in str(values.get("eval_metric", "")).split(","):
        base = metric.strip().split("@")[0]
        if base and base not in EVAL_METRICS:
            raise ValidationError(
                f"Hyperparameter 'eval_metric' has unknown metric {metric.strip()!r}; known: {', '.join(EVAL_METRICS)}",
                field="HyperParameters.eval_metric",
                value=values["eval_metric"],
            )
    return values


def _convert(name: str, text: str, param: Param) -> Any:
    value: Any = text
    try:
        decoded = json.loads(text)
        if not isinstance(decoded, dict | list):
            value = decoded
    except (TypeError, ValueError):
        pass
    try:
        if param.kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            value = int(number)
        elif param.kind is float:
            value = float(value)
        else:
            value = str(value).lower() if param.choices and isinstance(value, bool) else str(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"Hyperparameter {name!r} must be {'an integer' if param.kind is int else 'a number'}, got {text!r}",
            field=f"HyperParameters.{name}",
            value=text,
        ) from None
    if param.choices and value not in param.choices:
        raise ValidationError(
            f"Hyperparameter {name!r} must be one of {', '.join(param.choices)}; got {text!r}",
            field=f"HyperParameters.{name}",
            value=text,
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        low_fails = param.low is not None and (value <= param.low if param.low_open else value < param.low)
        if low_fails or (param.high is not None and value > param.high):
            bound = f"{'>' if param.low_open else '>='} {param.low:g}" if param.low is not None else ""
            upper = f"<= {param.high:g}" if param.high is not None else ""
            raise ValidationError(
                f"Hyperparameter {name!r} must be {' and '.join(b for b in (bound, upper) if b)}; got {text!r}",
                field=f"HyperParameters.{name}",
                value=text,
            )
    return value


_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def metric_definitions() -> list[dict[str, str]]:
    """The algorithm's own metric definitions: ``train:<metric>`` and ``validation:<metric>``."""
    return [
        {"Name": f"{channel}:{metric}", "Regex": f".*\\[[0-9]+\\].*#011{channel}-{metric}:{_NUMBER}"}
        for channel in ("train", "validation")
        for metric in EVAL_METRICS
    ]


# SageMaker's containers before 1.3-1 pickle the Booster into ``xgboost-model`` (their docs tell
# users to ``pickle.load`` it); 1.3-1 and later save it with ``Booster.save_model``, XGBoost's own
# format (``xgb.Booster().load_model("xgboost-model")``).
_FIRST_NATIVE = (1, 3)
_VERSION = re.compile(r"(\d+)\.(\d+)")


def model_file_format(image: str) -> str:
    """How the built-in algorithm of ``image`` saves ``xgboost-model``: "pickle" or "native".

    The tag's version decides (``sagemaker-xgboost:1.2-2`` pickles, ``:1.7-1`` does not); the
    first-party ``xgboost:1`` and ``xgboost:latest`` are AWS's legacy 0.72 algorithm, which pickles.
    """
    repository, _, tag = image.rsplit("/", 1)[-1].partition(":")
    match = _VERSION.match(tag)
    if match is None:
        return "pickle" if repository == "xgboost" else "native"
    return "pickle" if (int(match[1]), int(match[2])) < _FIRST_NATIVE else "native"
