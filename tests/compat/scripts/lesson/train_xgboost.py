"""The lesson's XGBoost script-mode trainer (its AWS_helpers/train_xgboost.py), written for the
test: raw Titanic CSV in, a pickled Booster out as ``xgboost-model``."""

import argparse
import os

import joblib
import pandas as pd
import xgboost as xgb
from sklearn.model_selection import train_test_split

FEATURES = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked"]


def preprocess_data(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    df = df.copy()
    df["Age"] = df["Age"].fillna(df["Age"].median())
    df["Embarked"] = df["Embarked"].fillna("S").map({"S": 0, "C": 1, "Q": 2})
    df["Sex"] = df["Sex"].map({"male": 1, "female": 0})
    return df[FEATURES], df["Survived"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", default="train.csv")
    parser.add_argument("--max_depth", type=int, default=5)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--subsample", type=float, default=0.8)
    parser.add_argument("--colsample_bytree", type=float, default=0.8)
    parser.add_argument("--num_round", type=int, default=100)
    args = parser.parse_args()

    data = pd.read_csv(os.path.join(os.environ.get("SM_CHANNEL_TRAIN", "."), args.train))
    X, y = preprocess_data(data)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.2, random_state=42)
    print(f"Train size: {X_train.shape}")
    params = {
        "objective": "binary:logistic",
        "max_depth": args.max_depth,
        "eta": args.eta,
        "subsample": args.subsample,
        "colsample_bytree": args.colsample_bytree,
        "eval_metric": "logloss",
    }
    booster = xgb.train(params, xgb.DMatrix(X_train, label=y_train), num_boost_round=args.num_round)
    print(f"xgboost {xgb.__version__}, {args.num_round} rounds")
    out = os.path.join(os.environ.get("SM_MODEL_DIR", "."), "xgboost-model")
    joblib.dump(booster, out)
    print(f"Model saved to {out}")
