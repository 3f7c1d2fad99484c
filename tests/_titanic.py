"""The Titanic data the tests ship (tests/data/titanic), as numeric CSV for training scripts."""

from __future__ import annotations

import csv
from pathlib import Path

DATA = Path(__file__).parent / "data" / "titanic"
COLUMNS = ["Survived", "Pclass", "Sex", "Age", "SibSp", "Parch", "Fare"]


def numeric_csv(split: str = "train", *, header: bool = True) -> bytes:
    """Survived first, then numeric features; Sex as 0/1, missing ages as 0."""
    lines = [",".join(COLUMNS)] if header else []
    with (DATA / f"titanic_{split}.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            values = [
                row["Survived"],
                row["Pclass"],
                "1" if row["Sex"] == "female" else "0",
                row["Age"] or "0",
                row["SibSp"],
                row["Parch"],
                row["Fare"] or "0",
            ]
            lines.append(",".join(values))
    return ("\n".join(lines) + "\n").encode()
