"""A script SageMaker's scikit-learn container both trains with and serves: training under the main
guard, model_fn/predict_fn for the model server, as the SageMaker examples write it."""

import argparse
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(data, model):
    return model.predict_proba(data)[:, 1]  # the survival probability, not the class


if __name__ == "__main__":
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    args = parser.parse_args()
    rows = np.genfromtxt(os.path.join(args.train, "train.csv"), delimiter=",", skip_header=1)
    labels, features = rows[:, 0], np.nan_to_num(rows[:, 1:])
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
    print(f"trained on {len(labels)} rows")
