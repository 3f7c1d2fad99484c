"""The server ↔ agent contract (runtime/contract.py) and a job's run record (core/jobs.py)."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path

import pytest

from shipyard.core.jobs import Billing, InstanceRecord, JobRun
from shipyard.core.placement import Resources
from shipyard.runtime.contract import (
    VERSION,
    AgentConfig,
    AgentStatus,
    ContractError,
    InstanceFolder,
    JobApi,
    Outcome,
    Phase,
    StoreAccess,
)


def _config(**changes: object) -> AgentConfig:
    base = AgentConfig(
        kind="training",
        request={"TrainingJobName": "j"},
        host="algo-1",
        host_index=0,
        object_store=StoreAccess("local", root="/data/objects"),
    )
    return base.replace(**changes)


def test_agent_config_round_trips_through_agent_json(tmp_path: Path) -> None:
    config = _config(
        api=JobApi("http://127.0.0.1:8300", "k", "s"),
        hide=("/data",),
        notes=("scaled down",),
        environment={"name": "sklearn", "builtin": "xgboost"},
        cpus=2.0,
        gpus=1,
    )
    folder = InstanceFolder(tmp_path / "algo-1")
    folder.write_config(config)
    assert folder.read_config() == config
    assert config.builtin == "xgboost"
    data = json.loads(folder.config_path.read_text())
    assert data["version"] == VERSION and data["object_store"] == {"kind": "local", "root": "/data/objects"}


def test_agent_config_defaults_live_in_one_place() -> None:
    config = AgentConfig.from_json(
        {
            "kind": "processing",
            "request": {},
            "host": "algo-2",
            "host_index": 1,
            "object_store": {"kind": "local"},
        }
    )
    assert (config.stop_grace_seconds, config.master_addr, config.master_port, config.api) == (
        30.0,
        "127.0.0.1",
        29500,
        None,
    )
    assert config.region == "us-east-1" and config.sandbox == "off"


def test_a_newer_contract_is_refused_naming_both_versions() -> None:
    data = _config().to_json() | {"version": VERSION + 1}
    with pytest.raises(ContractError, match=f"version {VERSION + 1}, this agent knows {VERSION}"):
        AgentConfig.from_json(data)


def test_a_config_missing_what_the_agent_needs_is_refused_naming_it() -> None:
    data = _config().to_json()
    del data["host"], data["object_store"]
    with pytest.raises(ContractError, match="lacks host, object_store"):
        AgentConfig.from_json(data)


def test_unknown_keys_from_a_newer_server_of_the_same_version_are_ignored() -> None:
    assert AgentConfig.from_json(_config().to_json() | {"future": 1}) == _config()


def test_status_round_trips_and_reads_as_the_old_files_did(tmp_path: Path) -> None:
    folder = InstanceFolder(tmp_path)
    status = AgentStatus(
        reported=True,
        agent_pid=12,
        started="2026-01-01T00:00:00+00:00",
        phases=(
            Phase("Downloading", "2026-01-01T00:00:01+00:00"),
            Phase("Training", "2026-01-01T00:00:02+00:00"),
        ),
        outcome=Outcome.MAX_RUNTIME,
        failure_reason="too long",
        model_artifacts="s3://b/m.tar.gz",
    )
    folder.write_status(status)
    assert folder.read_status() == status
    raw = json.loads(folder.status_path.read_text())
    assert raw["phase"] == "Training" and raw["outcome"] == "MaxRuntimeExceeded"  # what older readers read
    assert not folder.status_path.with_suffix(".tmp").exists()  # replaced atomically


@pytest.mark.parametrize("content", [None, "", "{not json", "[1, 2]"])
def test_a_missing_or_partial_status_reads_as_unreported(tmp_path: Path, content: str | None) -> None:
    folder = InstanceFolder(tmp_path)
    if content is not None:
        folder.status_path.write_text(content)
    status = folder.read_status()
    assert not status.reported and status.outcome is None and status.phase is None


def test_store_access_keeps_only_what_is_set() -> None:
    access = StoreAccess(
        "s3", endpoint_url="http://h:1", access_key_id="a", secret_access_key="s", max_attempts=16
    )
    assert StoreAccess.from_json(access.to_json()) == access
    assert "root" not in access.to_json()


# -- the run record ---------------------------------------------------------------------------------
def test_job_run_reads_rows_written_before_it_was_typed() -> None:
    old = {
        "region": "eu-west-1",
        "environment": {"name": "sklearn"},
        "owner": None,
        "attempt": 1,
        "backend": "ray",
        "instances": [
            {
                "host": "algo-1",
                "dir": "/j/a",
                "handle": {"pid": 3},
                "stream": "j/algo-1-1",
                "launched_at": 1000,
            }
        ],
        "placement": {"cpus": 2.0, "memory_gib": 8.0, "gpus": 0},
        "metric_offset": 120,
        "metric_steps": {"loss": 3},
        "model_artifacts": "s3://b/m",
        "training_seconds": 7,
        "billable_seconds": 14,
        "cost_usd": "0.0100",
        "sagemaker_cost_usd": "0.0200",
        "price_per_hour_usd": "0.115",
        "final_metrics": [{"MetricName": "loss", "Value": 0.1, "Timestamp": "2026-01-01T00:00:00+00:00"}],
        "exit_codes": [0, None],
        "something_new": {"kept": True},
    }
    run = JobRun.from_json(old)
    assert run.region == "eu-west-1" and run.attempt == 1 and run.backend == "ray"
    assert run.instances == (InstanceRecord("algo-1", "/j/a", {"pid": 3}, "j/algo-1-1", 1000),)
    assert run.placement == Resources(2.0, 8.0, 0)
    assert run.billing == Billing(7, 14, Decimal("0.0100"), Decimal("0.0200"), Decimal("0.115"))
    assert run.exit_codes == (0, None)
    assert run.extra == {"something_new": {"kept": True}}  # nothing a newer server wrote is lost
    assert JobRun.from_json(run.to_json()) == run
    assert run.billing is not None
    scaled = run.replace(billing=dataclasses.replace(run.billing, billed_as="ml.c5.large"))  # scaled down
    assert JobRun.from_json(scaled.to_json()) == scaled  # the type it was charged as survives a restart


def test_next_attempt_drops_the_last_attempts_instances_and_keeps_what_was_observed() -> None:
    run = JobRun(
        attempt=0,
        instances=(InstanceRecord("algo-1", "/d", {}, "s", 0),),
        placement=Resources(1, 1),
        stop_signalled=True,
        phases_seen=3,
        metric_offset=99,
        metric_steps={"loss": 5},
        ledger="training/j/0",
    )
    nxt = run.next_attempt()
    assert (
        nxt.attempt,
        nxt.instances,
        nxt.placement,
        nxt.stop_signalled,
        nxt.phases_seen,
        nxt.metric_offset,
    ) == (
        1,
        (),
        None,
        False,
        0,
        0,
    )
    assert nxt.metric_steps == {"loss": 5} and nxt.ledger == "training/j/0"
    assert not nxt.launched and run.launched
