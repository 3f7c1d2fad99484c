"""The Slurm backend's decisions: sbatch requests from the site table, squeue states as job
statuses and their messages, sinfo as capacity and runnable types, sacct's fields."""

from __future__ import annotations

import re

import pytest

from shipyard.core.placement import Resources
from shipyard.core.slurm import (
    SlurmRequest,
    SlurmSite,
    alloc_tres,
    capacity,
    elapsed_seconds,
    parse_sinfo,
    parse_squeue,
    unrunnable,
)
from shipyard.errors import ValidationError

SITE = SlurmSite.from_config(
    partition="cpu",
    account="lab-smith",
    types={
        "ml.g5.*": {"partition": "gpu", "gres": "gpu:a10g:1", "qos": "gpu-normal"},
        "ml.m5.large": {"cpus_per_task": 4, "memory_mib": 4000},
    },
)


def test_a_type_without_a_row_asks_for_what_it_was_granted_in_the_default_partition() -> None:
    request = SITE.request("ml.c5.xlarge", Resources(4, 8), 1, 3600)
    assert request.sbatch_args() == [
        "--nodes=1",
        "--ntasks=1",
        "--ntasks-per-node=1",
        "--cpus-per-task=4",
        "--mem=8192M",
        "--partition=cpu",
        "--account=lab-smith",
        "--time=75",  # the hour, and the margin for downloads, environment and uploads
    ]


def test_the_table_row_overrides_partition_gres_qos_cpus_and_memory() -> None:
    gpu = SITE.request("ml.g5.xlarge", Resources(4, 16, 1), 2, None)
    assert gpu == SlurmRequest(
        nodes=2,
        cpus_per_task=4,
        memory_mib=16384,
        gres="gpu:a10g:1",
        partition="gpu",
        qos="gpu-normal",
        account="lab-smith",
    )
    assert "--time" not in " ".join(gpu.sbatch_args())
    m5 = SITE.request("ml.m5.large", Resources(2, 8), 1, 60)
    assert (m5.cpus_per_task, m5.memory_mib, m5.partition) == (4, 4000, "cpu")


def test_gpus_without_a_row_ask_for_that_many_of_the_types_model() -> None:
    site = SlurmSite()
    assert site.request("ml.p3.2xlarge", Resources(8, 61, 1), 1, None, gpu_model="v100").gres == "gpu:v100:1"
    assert site.request("ml.p3.2xlarge", Resources(8, 61, 1), 1, None).gres == "gpu:1"


def test_a_scaled_down_grant_asks_for_whole_cpus() -> None:
    request = SlurmSite().request("ml.m5.large", Resources(0.5, 1.5), 1, None)
    assert (request.cpus_per_task, request.memory_mib, request.partition) == (1, 1536, None)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"partiton": "gpu"}, "slurm_types.'ml.g5.*': unknown key 'partiton'"),
        (
            {"cpus_per_task": 0},
            "slurm_types.'ml.g5.*'.cpus_per_task must be a whole number of at least 1, got 0",
        ),
        ({"gres": "gpus=1"}, "slurm_types.'ml.g5.*'.gres must be Slurm's form name[:type]:count"),
        ({"partition": "gpu; rm -rf /"}, "slurm_types.'ml.g5.*'.partition must be a Slurm name"),
    ],
)
def test_a_bad_table_row_is_refused_naming_the_key_and_value(row: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as error:
        SlurmSite.from_config(types={"ml.g5.*": row})
    assert message in error.value.message


def test_a_bad_default_account_is_refused() -> None:
    with pytest.raises(ValidationError, match=re.escape("slurm.account must be a Slurm name")):
        SlurmSite.from_config(account="lab smith")


SQUEUE = """\
41|shipyard-ab12-training-j1-1|PENDING|Resources|
42|shipyard-ab12-training-j2-1|PENDING|QOSMaxJobsPerUserLimit|
43|shipyard-ab12-training-j3-1|RUNNING|None|node-[1-2]
44|shipyard-ab12-training-j4-1|NODE_FAIL|NodeDown|node-3
45|x|PENDING|SomethingNew|
"""


def test_squeue_states_say_whether_a_job_waits_runs_or_ended_and_why() -> None:
    jobs = parse_squeue(SQUEUE)
    assert (
        jobs["41"].waiting_message() == "Queued in Slurm as job 41: the nodes it needs are busy (Resources)"
    )
    assert jobs["42"].waiting_message() == (
        "Queued in Slurm as job 42: the QOS's limit on running jobs per user is reached "
        "(QOSMaxJobsPerUserLimit)"
    )
    assert jobs["45"].waiting_message() == "Queued in Slurm as job 45: SomethingNew"
    running = jobs["43"]
    assert (running.pending, running.ended, running.waiting_message(), running.lost_reason()) == (
        False,
        False,
        None,
        None,
    )
    failed = jobs["44"]
    assert failed.ended
    assert failed.lost_reason() == "its Slurm node failed (node-3) (Slurm job 44: NODE_FAIL)"


def test_sacct_states_with_who_cancelled_are_read_as_the_state() -> None:
    job = parse_squeue("7|n|CANCELLED by 0|None|node-1")["7"]
    assert job.lost_reason() == "Slurm job 7 was cancelled outside Shipyard (scancel)"


SINFO = """\
node-1|4|8000|(null)|idle|cpu*
node-2|4|8000|(null)|mix|cpu*
node-3|8|64000|gpu:a10g:2(S:0)|alloc|gpu
node-4|4|8000|(null)|down*|cpu*
node-2|4|8000|(null)|mix|debug
"""


def test_sinfo_gives_the_usable_nodes_capacity_and_the_largest() -> None:
    nodes = parse_sinfo(SINFO)
    assert [n.name for n in nodes] == ["node-1", "node-2", "node-3", "node-4"]
    assert nodes[1].partitions == ("cpu", "debug")
    total, largest = capacity(nodes)
    assert total == Resources(16, 80000 / 1024, 2)  # node-4 is down
    assert largest == Resources(8, 64000 / 1024, 2)
    assert capacity(nodes, "cpu")[0] == Resources(8, 16000 / 1024, 0)


def test_a_type_is_runnable_where_enough_nodes_of_its_partition_fit_it() -> None:
    nodes = parse_sinfo(SINFO)
    assert unrunnable(SITE.request("ml.g5.xlarge", Resources(4, 16, 1), 1, None), nodes) is None
    two = unrunnable(SITE.request("ml.g5.xlarge", Resources(4, 16, 1), 2, None), nodes)
    assert two is not None and two.startswith("partition 'gpu' has 1 node(s) with 4 CPUs"), two
    big = unrunnable(SITE.request("ml.c5.9xlarge", Resources(36, 72), 1, None), nodes)
    assert big is not None and "(its largest: 4 CPUs, 8000 MiB, 0 GPUs)" in big
    assert (
        unrunnable(SlurmRequest(1, 1, 100, partition="nope"), nodes) == "partition 'nope' has no usable node"
    )


def test_sacct_elapsed_and_alloc_tres() -> None:
    assert elapsed_seconds("00:00:02") == 2
    assert elapsed_seconds("1-02:03:04") == 86_400 + 2 * 3600 + 3 * 60 + 4
    assert elapsed_seconds("05:07") == 307
    with pytest.raises(ValidationError, match="sacct's Elapsed must be"):
        elapsed_seconds("soon")
    assert alloc_tres("cpu=2,mem=1000M,node=2,gres/gpu=1") == {
        "cpu": "2",
        "mem": "1000M",
        "node": "2",
        "gres/gpu": "1",
    }


def test_the_partitions_a_site_submits_to() -> None:
    assert SITE.partitions == ("cpu", "gpu")
    assert SlurmSite(types=SITE.types).partitions is None  # the cluster's default: any node
    nodes = parse_sinfo(SINFO)
    assert capacity(nodes, ("cpu", "gpu"))[0] == Resources(16, 80000 / 1024, 2)
    assert capacity(nodes, "debug")[0] == Resources(4, 8000 / 1024, 0)
