"""SageMaker's built-in XGBoost algorithm, run inside the job's environment.

Self-contained on purpose: the agent copies this file into /opt/ml/code and runs it with the job's
Python (xgboost, numpy, scipy, pandas), which has no Shipyard installed. It follows the SageMaker
XGBoost container's contract: hyperparameters from /opt/ml/input/config/hyperparameters.json,
channels ``train`` and optional ``validation`` (text/csv with the label first and no header,
text/libsvm — the default — or application/x-parquet), evaluation lines in SageMaker's
``[round]#011train-metric:value`` form, the model saved as /opt/ml/model/xgboost-model by the
first host. With several hosts, training uses XGBoost's collective (``xgboost.rabit`` before
xgboost 1.7, the 1.0-1 ... 1.5-1 images) with algo-1 hosting the tracker on MASTER_ADDR:MASTER_PORT.

``xgboost-model`` is saved as the container of the image's version saves it (``--model-format``):
a pickled Booster before 1.3-1, XGBoost's own format (``Booster.save_model``) from 1.3-1 on. A
failure writes SageMaker's /opt/ml/output/failure: ``ClientError: ...`` for the data and channels,
``AlgorithmError: ...`` with XGBoost's own message (its first line, without the C++ frames).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

INT_PARAMS = {
    "num_round",
    "num_class",
    "early_stopping_rounds",
    "csv_weights",
    "max_depth",
    "max_leaves",
    "max_bin",
    "num_parallel_tree",
    "seed",
    "nthread",
    "verbosity",
    "refresh_leaf",
    "one_drop",
    "max_cat_to_onehot",
}
STR_PARAMS = {
    "objective",
    "eval_metric",
    "booster",
    "tree_method",
    "device",
    "updater",
    "process_type",
    "grow_policy",
    "sample_type",
    "normalize_type",
    "interaction_constraints",
    "monotone_constraints",
    "deterministic_histogram",
    "single_precision_histogram",
    "use_dask_gpu_training",
}
TUNING_OBJECTIVE = "_tuning_objective_metric"  # added by automatic model tuning: train:auc, ...
NOT_FOR_XGBOOST = {
    "num_round",
    "early_stopping_rounds",
    "csv_weights",
    "use_dask_gpu_training",
    TUNING_OBJECTIVE,
}


class JobFailure(Exception):
    """Ends the job with this reason (``ClientError: ...`` or ``AlgorithmError: ...``)."""


def client_error(message: str) -> JobFailure:
    return JobFailure(f"ClientError: {message}")


def error_message(text: str) -> str:
    """XGBoost's error as a person reads it: the first line of its message, without the
    ``[12:00:00] /workspace/src/file.cc:123:`` prefix and the C++ stack frames after it."""
    message = text.split("Stack trace:", 1)[0]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = lines[0] if lines else text.strip()
    return re.sub(r"^\[[0-9:]+\]\s+(?:[^\s:]+:\d+:\s*)?", "", first)


def hyperparameters(path: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, raw in json.loads(path.read_text()).items():
        if name.startswith("sagemaker_"):
            continue
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = raw
        if name in INT_PARAMS:
            values[name] = int(float(value))
        elif name in STR_PARAMS or name == TUNING_OBJECTIVE:
            values[name] = str(value)
        else:
            values[name] = float(value)
    return values


def device_parameters(params: dict[str, Any], gpus: int, version: str) -> tuple[dict[str, Any], str | None]:
    """The booster's parameters on an instance with ``gpus`` GPUs and XGBoost ``version``, and
    a line for the log. On a GPU type, as SageMaker's algorithm trains there: ``tree_method=hist,
    device=cuda`` (``gpu_hist`` before XGBoost 2.0, which has no ``device``), unless the job set
    either itself; without a GPU, XGBoost's own (CPU) defaults."""
    if gpus <= 0:
        return params, None
    count = f"{gpus} GPU{'s' if gpus != 1 else ''}"
    given = {k: params[k] for k in ("tree_method", "device") if k in params}
    if given:
        shown = ", ".join(f"{k}={v}" for k, v in given.items())
        return params, f"Shipyard: XGBoost on an instance with {count}: {shown}, as the job set"
    found = re.match(r"\d+", version)
    major = int(found.group()) if found else 0
    chosen = {"tree_method": "hist", "device": "cuda"} if major >= 2 else {"tree_method": "gpu_hist"}
    shown = ", ".join(f"{k}={v}" for k, v in chosen.items())
    return {**params, **chosen}, f"Shipyard: XGBoost {version} on {count}: {shown} (on its first GPU)"


def content_type(config: dict[str, object]) -> str:
    raw = str(config.get("ContentType") or "text/libsvm").lower().split(";")[0].strip()
    if raw in ("text/csv", "csv"):
        return "csv"
    if raw in ("application/x-parquet", "parquet"):
        return "parquet"
    if raw in ("text/libsvm", "libsvm", "text/x-libsvm"):
        return "libsvm"
    raise client_error(
        f"channel content type {raw!r} is not supported; use text/csv, text/libsvm or application/x-parquet"
    )


def load(channel_dir: Path, kind: str, csv_weights: bool):  # type: ignore[no-untyped-def]
    import numpy as np
    import xgboost as xgb

    files = sorted(p for p in channel_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise client_error(f"channel {channel_dir.name!r} has no files")
    if kind == "libsvm":
        with tempfile.NamedTemporaryFile("wb", suffix=".libsvm", delete=False) as joined:
            for path in files:
                data = path.read_bytes()
                joined.write(data if data.endswith(b"\n") else data + b"\n")
        return xgb.DMatrix(f"{joined.name}?format=libsvm")
    if kind == "csv":
        try:
            blocks = [np.loadtxt(p, delimiter=",", ndmin=2) for p in files if p.stat().st_size]
            matrix = np.vstack(blocks)
        except ValueError as exc:
            raise client_error(
                f"channel {channel_dir.name!r} is not numeric text/csv with the label first: {exc}"
            ) from None
    else:
        import pandas as pd

        matrix = pd.concat([pd.read_parquet(p) for p in files]).to_numpy(dtype=float)
    labels, rest = matrix[:, 0], matrix[:, 1:]
    if csv_weights:
        return xgb.DMatrix(rest[:, 1:], label=labels, weight=rest[:, 0])
    return xgb.DMatrix(rest, label=labels)


def main(argv: list[str]) -> None:
    import xgboost as xgb

    model_format = argv[argv.index("--model-format") + 1] if "--model-format" in argv else "native"
    config_dir = Path(os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    data_dir = Path(os.environ.get("SM_INPUT_DIR", "/opt/ml/input")) / "data"
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    params = hyperparameters(config_dir / "hyperparameters.json")
    channels = json.loads((config_dir / "inputdataconfig.json").read_text())
    resources = json.loads((config_dir / "resourceconfig.json").read_text())
    if "train" not in channels:
        raise client_error("the built-in XGBoost algorithm needs a 'train' channel")
    weights = bool(params.get("csv_weights", 0))
    datasets = [("train", load(data_dir / "train", content_type(channels["train"]), weights))]
    if "validation" in channels:
        datasets.append(
            ("validation", load(data_dir / "validation", content_type(channels["validation"]), weights))
        )
    booster_params = {k: v for k, v in params.items() if k not in NOT_FOR_XGBOOST}
    booster_params.setdefault("objective", "reg:squarederror")
    booster_params, note = device_parameters(
        booster_params, int(os.environ.get("SM_NUM_GPUS", "0") or 0), xgb.__version__
    )
    if note:
        print(note, flush=True)
    if "eval_metric" in booster_params:
        booster_params["eval_metric"] = [m.strip() for m in str(booster_params["eval_metric"]).split(",")]
    if TUNING_OBJECTIVE in params:  # as SageMaker's container does: the tuned metric is evaluated too
        tuned = str(params[TUNING_OBJECTIVE]).split(":", 1)[-1]
        metrics = booster_params.setdefault("eval_metric", [])
        if tuned and tuned not in metrics:
            metrics.append(tuned)
    hosts, host = resources["hosts"], resources["current_host"]

    class SageMakerLog(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):  # type: ignore[no-untyped-def]
            parts = [
                f"{data}-{metric}:{values[-1]:.5f}"
                for data, metrics in evals_log.items()
                for metric, values in metrics.items()
            ]
            if not hosts or host == hosts[0]:
                print(f"[{epoch}]#011" + "#011".join(parts), flush=True)
            return False

    def train():  # type: ignore[no-untyped-def]
        return xgb.train(
            booster_params,
            datasets[0][1],
            num_boost_round=int(params["num_round"]),
            evals=[(matrix, name) for name, matrix in datasets],
            early_stopping_rounds=params.get("early_stopping_rounds"),
            verbose_eval=False,
            callbacks=[SageMakerLog()],
        )

    booster = train_distributed(train, hosts, host) if len(hosts) > 1 else train()
    if host == hosts[0]:
        model_dir.mkdir(parents=True, exist_ok=True)
        save(booster, model_dir / "xgboost-model", model_format)
        print(
            f"Saved model to {model_dir / 'xgboost-model'} ({booster.num_boosted_rounds()} rounds, "
            f"{'a pickled Booster' if model_format == 'pickle' else 'XGBoost format'})",
            flush=True,
        )


def save(booster, path: Path, model_format: str) -> None:  # type: ignore[no-untyped-def]
    if model_format == "pickle":
        with path.open("wb") as f:
            pickle.dump(booster, f)
    else:
        booster.save_model(str(path))


def run(argv: list[str]) -> int:
    """Train, or write why not to /opt/ml/output/failure and its reason as the log's last line."""
    try:
        import xgboost as xgb

        try:
            main(argv)
            return 0
        except xgb.core.XGBoostError as exc:
            reason = f"AlgorithmError: {error_message(str(exc))}"
    except JobFailure as exc:
        reason = str(exc)
    output = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    try:
        output.mkdir(parents=True, exist_ok=True)
        (output / "failure").write_text(reason)
    except OSError:
        pass  # the log still says it
    print(reason, file=sys.stderr, flush=True)
    return 1


def train_distributed(train, hosts, host):  # type: ignore[no-untyped-def]
    import xgboost as xgb

    address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    rabit = not hasattr(xgb, "collective")  # xgboost < 1.7 (the 1.0-1 ... 1.5-1 images): rabit
    if host == hosts[0]:
        from xgboost.tracker import RabitTracker

        if rabit:  # binds the first free port of [port, port_end): exactly MASTER_PORT
            tracker = RabitTracker(hostIP=address, nslave=len(hosts), port=port, port_end=port + 1)
        else:
            tracker = RabitTracker(host_ip=address, n_workers=len(hosts), port=port)
        try:
            tracker.start(len(hosts))
        except TypeError:  # xgboost >= 2 starts without the count
            tracker.start()
        threading.Thread(target=tracker.join, daemon=True).start()
    env = {
        "DMLC_TRACKER_URI": address,
        "DMLC_TRACKER_PORT": port,
        "DMLC_TASK_ID": host,
        "DMLC_NUM_WORKER": len(hosts),
    }
    if rabit:
        xgb.rabit.init([f"{name}={value}".encode() for name, value in env.items()])
        try:
            print(f"{host}: joined distributed training of {len(hosts)} hosts", flush=True)
            return train()
        finally:
            xgb.rabit.finalize()
    with xgb.collective.CommunicatorContext(**env):
        print(f"{host}: joined distributed training of {len(hosts)} hosts", flush=True)
        return train()


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
