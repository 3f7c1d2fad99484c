"""A SageMaker script-mode training script, as a researcher writes it (scikit-learn on Titanic)."""

import argparse
import os
import pickle

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--max-depth", type=int, default=3)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
args = parser.parse_args()

rows = np.genfromtxt(os.path.join(args.train, "train.csv"), delimiter=",", skip_header=1)
labels, features = rows[:, 0], np.nan_to_num(rows[:, 1:])
print(f"training on {len(labels)} rows from {args.train}")
weights = np.zeros(features.shape[1])
for epoch in range(args.epochs):
    accuracy = float(np.mean((features @ weights > 0) == labels)) if epoch else 0.5
    print(f"epoch={epoch} train_accuracy={accuracy:.4f}")
    weights += features.T @ (labels - (features @ weights > 0)) / len(labels)
with open(os.path.join(args.model_dir, "model.pkl"), "wb") as f:
    pickle.dump({"weights": weights.tolist(), "max_depth": args.max_depth}, f)
print("saved model")
