# %% [markdown]
# # Titanic with Shipyard's SDK, cell by cell
#
# What `shipyard demo` does, as a notebook would: only `import shipyard`, no AWS notions. Run it
# as a script (`python examples/quickstart.py`) or cell by cell (the `# %%` markers are cells in
# Jupyter, VS Code and PyCharm). The server is `$SHIPYARD_URL`, else the embedded default.

# %%
import csv
from pathlib import Path

import shipyard

QUICKSTART = Path(__file__).resolve().parent.parent / "src" / "shipyard" / "cli" / "quickstart"
data = {
    "train": QUICKSTART / "data" / "titanic_train.csv",
    "validation": QUICKSTART / "data" / "titanic_test.csv",
}

# %% Train: the script is a plain SageMaker script-mode script; its log streams here.
estimator = shipyard.Estimator(
    QUICKSTART / "code" / "titanic.py",
    framework="xgboost",
    hyperparameters={"num-round": 50, "max-depth": 4},
    metrics={"validation:accuracy": r"validation-accuracy=([0-9.]+)"},
    tags={"Project": "titanic"},
)
job = estimator.fit(data)
print(job.final_metrics)
job.metrics().tail()  # the learning curve, a DataFrame

# %% Tune: 4 trials, 2 at a time.
tuner = shipyard.Tuner(
    estimator,
    objective="validation:accuracy",
    params={"max-depth": shipyard.integer(2, 8), "eta": shipyard.loguniform(0.02, 0.5)},
    max_trials=4,
    parallel=2,
)
tuning = tuner.fit(data)
print(tuning.leaderboard())

# %% Deploy the best trial and ask it about passengers it never saw.
endpoint = tuning.best_job.deploy()


def value(text):  # the CSV's numbers as numbers, blanks as missing
    try:
        return float(text)
    except ValueError:
        return text or None


with data["validation"].open(newline="") as f:
    passengers = [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]
chances = endpoint.predict(passengers)
right = sum((c > 0.5) == bool(p["Survived"]) for c, p in zip(chances, passengers, strict=True))
print(f"accuracy {right / len(passengers):.3f} on {len(passengers)} passengers")

# %% What it cost, then clean up.
print(f"training ${job.cost:.6f}, tuning ${tuning.cost:.6f}, endpoint ${endpoint.cost:.6f}")
endpoint.delete()
