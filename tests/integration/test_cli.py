"""The `shipyard` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shipyard.store._migrate import head_revision


def _shipyard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_db_upgrade_on_sqlite_then_up_to_date(data_dir: Path) -> None:
    first = _shipyard("db", "upgrade", "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    assert f"upgraded from empty to revision {head_revision()}" in first.stdout
    again = _shipyard("db", "upgrade", "--data-dir", str(data_dir))
    assert f"up to date (revision {head_revision()})" in again.stdout


def test_db_upgrade_on_postgres(data_dir: Path, postgres_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    result = _shipyard("db", "upgrade", "--data-dir", str(data_dir), "--database-url", postgres_url)
    assert result.returncode == 0, result.stderr
    assert f"revision {head_revision()}" in result.stdout


def test_bad_input_is_one_readable_line(data_dir: Path) -> None:
    result = _shipyard("server", "--data-dir", str(data_dir), env={"SHIPYARD_PORT": "eighty"})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: environment variable SHIPYARD_PORT: port must be an integer, got 'eighty'"
    )
    result = _shipyard("db", "upgrade", "--database-url", "nonsense://", "--data-dir", str(data_dir))
    assert result.returncode == 1 and "nonsense://" in result.stderr and "Traceback" not in result.stderr


def test_demo_runs_on_the_embedded_default(tmp_path: Path) -> None:
    result = _shipyard("demo", env={"SHIPYARD_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Quickstart complete" in result.stdout
    assert "server stopped cleanly" in result.stdout
    import re

    accuracy = float(re.search(r"held-out accuracy ([0-9.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    best = float(re.search(r"tuning job \S+: best ([0-9.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    assert accuracy > 0.7 and best > 0.7  # a random forest on Titanic, held-out
    assert result.stdout.count("survival") == 5 and "endpoint deleted" in result.stdout


def test_jobs_commands_list_describe_logs_and_metrics(server: object, tmp_path: Path) -> None:
    import json

    import shipyard

    url = server.url  # type: ignore[attr-defined]
    (tmp_path / "train.py").write_text("for i in range(3):\n    print(f'loss={1 / (i + 1):.3f}')\n")
    job = shipyard.Estimator(
        tmp_path / "train.py", metrics={"loss": r"loss=([0-9.]+)"}, connection=shipyard.connect(url)
    ).fit(logs=False)
    env = {"SHIPYARD_URL": url}
    listed = _shipyard("jobs", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert job.name in [j["TrainingJobName"] for j in json.loads(listed.stdout)]
    described = _shipyard("jobs", "describe", job.name, env=env)
    assert "Completed" in described.stdout and "loss" in described.stdout
    logs = _shipyard("jobs", "logs", job.name, env=env)
    assert [line for line in logs.stdout.splitlines() if line.startswith("loss=")] == [
        "loss=1.000",
        "loss=0.500",
        "loss=0.333",
    ]
    metrics = json.loads(_shipyard("jobs", "metrics", job.name, "--json", env=env).stdout)
    assert [p["value"] for p in metrics["loss"]] == [1.0, 0.5, 0.333]
    missing = _shipyard("jobs", "describe", "no-such-job", env=env)
    assert missing.returncode == 1 and "no-such-job" in missing.stderr and "Traceback" not in missing.stderr
