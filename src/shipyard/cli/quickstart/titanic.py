"""Who survived the Titanic: a SageMaker script-mode training script, and its inference handlers.

Trained with the scikit-learn framework image: reads the ``train`` and ``test`` channels (the
Kaggle CSV as it comes), fits a random forest, prints its held-out accuracy for the tuning job's
metric, and saves the model. Served, it takes rows of the features below (JSON) and answers the
survival probability of each.
"""

import argparse
import os
from typing import Any

import joblib
import numpy as np

FEATURES = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare"]


def features(frame: Any) -> Any:
    """The numeric features of a passenger table: sex as 0/1, missing ages and fares as 0."""
    table = frame[FEATURES].copy()
    table["Sex"] = (table["Sex"] == "female").astype(int)
    return table.fillna(0).to_numpy(dtype=float)


def model_fn(model_dir: str) -> Any:
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(rows: Any, model: Any) -> Any:
    return model.predict_proba(np.asarray(rows, dtype=float))[:, 1]


if __name__ == "__main__":
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    parser = argparse.ArgumentParser()
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--max-depth", type=int, default=5)
    parser.add_argument("--min-samples-leaf", type=int, default=1)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--test", default=os.environ.get("SM_CHANNEL_TEST"))
    args = parser.parse_args()

    train = pd.read_csv(os.path.join(args.train, "titanic_train.csv"))
    test = pd.read_csv(os.path.join(args.test, "titanic_test.csv"))
    model = RandomForestClassifier(
        n_estimators=args.n_estimators,
        max_depth=args.max_depth,
        min_samples_leaf=args.min_samples_leaf,
        random_state=0,
    ).fit(features(train), train["Survived"])
    print(f"trained on {len(train)} passengers")
    print(f"validation-accuracy={model.score(features(test), test['Survived']):.4f}")
    joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
