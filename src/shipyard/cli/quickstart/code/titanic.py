"""Who survived the Titanic: an XGBoost training script, and its inference handlers.

A SageMaker script-mode script, unchanged from what would run there. Trained, it reads the
``train`` and ``validation`` channels (the Kaggle CSV as it comes), boosts trees for
``--num-round`` rounds, prints the validation accuracy after each round (the tuning job's
metric), and saves the model. Served, it takes passengers as JSON records (the CSV's columns)
and answers each one's chance of survival.
"""

import argparse
import json
import os
from typing import Any

import numpy as np
import xgboost as xgb

FEATURES = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked"]
PORTS = {"S": 0, "C": 1, "Q": 2}


def features(frame: Any) -> Any:
    """The numeric features of a passenger table: sex as 0/1, the port as 0-2; missing values stay
    missing (XGBoost learns where they go)."""
    table = frame.reindex(columns=FEATURES).copy()
    table["Sex"] = (table["Sex"] == "female").astype(float)
    table["Embarked"] = table["Embarked"].map(PORTS)
    return table.astype(float).to_numpy()


def model_fn(model_dir: str) -> Any:
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, "xgboost-model.json"))
    return booster


def input_fn(body: bytes, content_type: str) -> Any:
    import pandas as pd

    if not content_type.startswith("application/json"):
        raise ValueError(f"send passengers as JSON records, not {content_type}")
    return pd.DataFrame.from_records(json.loads(body))


def predict_fn(passengers: Any, model: Any) -> Any:
    return model.predict(xgb.DMatrix(features(passengers)))


def output_fn(prediction: Any, accept: str) -> Any:
    return json.dumps(np.round(prediction, 4).tolist()), "application/json"


if __name__ == "__main__":
    import pandas as pd

    parser = argparse.ArgumentParser()
    parser.add_argument("--num-round", type=int, default=50)
    parser.add_argument("--max-depth", type=int, default=4)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--min-child-weight", type=float, default=1.0)
    parser.add_argument("--subsample", type=float, default=1.0)
    args, _ = parser.parse_known_args()

    train = pd.read_csv(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "titanic_train.csv"))
    valid = pd.read_csv(os.path.join(os.environ["SM_CHANNEL_VALIDATION"], "titanic_test.csv"))
    dtrain = xgb.DMatrix(features(train), label=train["Survived"])
    dvalid = xgb.DMatrix(features(valid))
    params = {
        "objective": "binary:logistic",
        "max_depth": args.max_depth,
        "eta": args.eta,
        "min_child_weight": args.min_child_weight,
        "subsample": args.subsample,
        "eval_metric": "error",
        "seed": 0,
        "nthread": 1,
    }
    print(f"training on {len(train)} passengers, validating on {len(valid)}")
    booster = xgb.train(params, dtrain, num_boost_round=args.num_round)
    every = max(1, args.num_round // 10)  # ten points of the learning curve, the last at the end
    for rounds in sorted({*range(every, args.num_round, every), args.num_round}):
        chances = booster.predict(dvalid, iteration_range=(0, rounds))
        accuracy = float(((chances > 0.5) == valid["Survived"].to_numpy()).mean())
        print(f"round {rounds}: validation-accuracy={accuracy:.4f}", flush=True)
    booster.save_model(os.path.join(os.environ["SM_MODEL_DIR"], "xgboost-model.json"))
