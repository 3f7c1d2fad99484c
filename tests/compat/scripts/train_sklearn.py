"""A SageMaker script-mode training script, as a researcher writes it (scikit-learn on Titanic)."""

import argparse
import os

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import RandomForestClassifier

parser = argparse.ArgumentParser()
parser.add_argument("--max-depth", type=int, default=3)
parser.add_argument("--n-estimators", type=int, default=3)
parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
args = parser.parse_args()

rows = np.genfromtxt(os.path.join(args.train, "train.csv"), delimiter=",", skip_header=1)
labels, features = rows[:, 0], np.nan_to_num(rows[:, 1:])
print(f"training on {len(labels)} rows from {args.train} with scikit-learn {sklearn.__version__}")
for trees in range(1, args.n_estimators + 1):
    model = RandomForestClassifier(n_estimators=trees * 10, max_depth=args.max_depth, random_state=0)
    model.fit(features, labels)
    print(f"trees={trees * 10} train_accuracy={model.score(features, labels):.4f}")
joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
print("saved model")
