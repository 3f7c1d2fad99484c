"""The lesson's PyTorch trainer (its AWS_helpers/train_nn.py), written for the test: a small
feed-forward net on the npz files, ``validation:accuracy = ...`` lines for the tuner."""

import argparse
import os

import numpy as np
import pandas as pd
import torch
from torch import nn


class TitanicNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(7, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return torch.sigmoid(self.fc3(x))


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((torch.round(predictions) == labels).float().mean())


def train(train_path: str, val_path: str, epochs: int, learning_rate: float) -> None:
    train_data, val_data = np.load(train_path), np.load(val_path)
    X_train = torch.tensor(train_data["X_train"], dtype=torch.float32)
    y_train = torch.tensor(train_data["y_train"], dtype=torch.float32).unsqueeze(1)
    X_val = torch.tensor(val_data["X_val"], dtype=torch.float32)
    y_val = torch.tensor(val_data["y_val"], dtype=torch.float32).unsqueeze(1)
    torch.manual_seed(0)
    model = TitanicNet()
    loss_fn = nn.BCELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    import sklearn  # the lesson's script uses pandas and scikit-learn: AWS's PyTorch containers carry both

    print(
        f"pandas {pd.__version__}, scikit-learn {sklearn.__version__}, torch {torch.__version__}", flush=True
    )
    for epoch in range(epochs):
        model.train()
        optimizer.zero_grad()
        loss = loss_fn(model(X_train), y_train)
        loss.backward()
        optimizer.step()
        if (epoch + 1) % 100 == 0 or epoch == epochs - 1:
            model.eval()
            with torch.no_grad():
                val_accuracy = accuracy(model(X_val), y_val)
            print(f"Epoch [{epoch + 1}/{epochs}], Loss: {loss.item():.4f}", flush=True)
            print(f"validation:accuracy = {val_accuracy:.4f}", flush=True)
    out = "/opt/ml/model/nn_model.pth" if os.path.exists("/opt/ml/model") else "nn_model.pth"
    torch.save(model.state_dict(), out)
    print(f"Model saved to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", required=True)
    parser.add_argument("--val", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning_rate", type=float, default=0.001)
    args = parser.parse_args()
    train(args.train, args.val, args.epochs, args.learning_rate)
