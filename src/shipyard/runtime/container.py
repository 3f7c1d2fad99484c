"""The SageMaker training container contract: the /opt/ml layout and the ``SM_*`` environment.

Pure functions of the job's spec and the instance's place in it, so that every backend (and the
tests) lays out an instance the same way the SageMaker training toolkit would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from shipyard.core.training import TrainingJobSpec, to_cmd_args

ML_ROOT = PurePosixPath("/opt/ml")
GROUP = "homogeneousCluster"


def hosts_for(count: int) -> list[str]:
    return [f"algo-{i + 1}" for i in range(count)]


def resource_config(spec: TrainingJobSpec, host: str, gpus: Sequence[str] = ()) -> dict[str, Any]:
    """``resourceconfig.json``; ``gpus``: the UUIDs of the GPUs the instance was granted (a
    Shipyard addition, ``current_gpus``, the same list as ``CUDA_VISIBLE_DEVICES``)."""
    hosts = hosts_for(spec.instance_count)
    extra = {"current_gpus": list(gpus)} if gpus else {}
    return {
        **extra,
        "current_host": host,
        "current_instance_type": spec.instance_type,
        "current_group_name": GROUP,
        "hosts": hosts,
        "instance_groups": [
            {"instance_group_name": GROUP, "instance_type": spec.instance_type, "hosts": hosts}
        ],
        "network_interface_name": "eth0",
    }


def input_data_config(spec: TrainingJobSpec) -> dict[str, Any]:
    return {c.name: c.to_config() for c in spec.channels}


def config_files(spec: TrainingJobSpec, host: str, gpus: Sequence[str] = ()) -> dict[str, Any]:
    """The files of /opt/ml/input/config, by name."""
    files: dict[str, Any] = {
        "hyperparameters.json": dict(spec.hyperparameters),
        "resourceconfig.json": resource_config(spec, host, gpus),
        "inputdataconfig.json": input_data_config(spec),
    }
    if spec.checkpoint_s3_uri:
        files["checkpointconfig.json"] = {
            "LocalPath": spec.checkpoint_local_path,
            "S3Uri": spec.checkpoint_s3_uri,
        }
    return files


def training_environment(
    spec: TrainingJobSpec,
    host: str,
    *,
    root: PurePosixPath = ML_ROOT,
    num_cpus: int,
    num_gpus: int,
    region: str,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    gpus: Sequence[str] = (),
) -> dict[str, str]:
    """The ``SM_*`` (and distributed-training) variables the training toolkit sets for user code.

    ``root`` is where /opt/ml appears to the user's process: /opt/ml in a sandbox, the instance
    folder itself when running unsandboxed. ``gpus``: the granted GPUs' UUIDs, when the backend
    grants specific devices (then ``num_gpus`` is their number).
    """
    num_gpus = len(gpus) if gpus else num_gpus
    hosts = hosts_for(spec.instance_count)
    hps = spec.user_hyperparameters
    channels = sorted(c.name for c in spec.channels)
    module_name = (spec.program or "").removesuffix(".py")
    paths = {
        "SM_MODEL_DIR": root / "model",
        "SM_INPUT_DIR": root / "input",
        "SM_INPUT_CONFIG_DIR": root / "input" / "config",
        "SM_OUTPUT_DIR": root / "output",
        "SM_OUTPUT_DATA_DIR": root / "output" / "data",
        "SM_OUTPUT_INTERMEDIATE_DIR": root / "output" / "intermediate",
        "SM_MODULE_DIR": spec.submit_directory or "",
    }
    user_args = to_cmd_args(hps)
    env: dict[str, str] = {name: str(value) for name, value in paths.items()}
    env.update(
        {
            "SM_HOSTS": json.dumps(hosts),
            "SM_CURRENT_HOST": host,
            "SM_CURRENT_INSTANCE_TYPE": spec.instance_type,
            "SM_CURRENT_INSTANCE_GROUP": GROUP,
            "SM_CURRENT_INSTANCE_GROUP_HOSTS": json.dumps(hosts),
            "SM_INSTANCE_GROUPS": json.dumps([GROUP]),
            "SM_INSTANCE_GROUPS_DICT": json.dumps(
                {GROUP: {"instance_group_name": GROUP, "instance_type": spec.instance_type, "hosts": hosts}}
            ),
            "SM_DISTRIBUTION_INSTANCE_GROUPS": json.dumps([]),
            "SM_IS_HETERO": "false",
            "SM_NETWORK_INTERFACE_NAME": "eth0",
            "SM_HPS": json.dumps(hps),
            "SM_CHANNELS": json.dumps(channels),
            "SM_USER_ENTRY_POINT": spec.program or "",
            "SM_MODULE_NAME": module_name,
            "SM_USER_ARGS": json.dumps(user_args),
            "SM_FRAMEWORK_PARAMS": json.dumps({}),
            "SM_FRAMEWORK_MODULE": "",
            "SM_RESOURCE_CONFIG": json.dumps(resource_config(spec, host, gpus)),
            "SM_INPUT_DATA_CONFIG": json.dumps(input_data_config(spec)),
            "SM_NUM_CPUS": str(num_cpus),
            "SM_NUM_GPUS": str(num_gpus),
            "SM_NUM_NEURONS": "0",
            "SM_LOG_LEVEL": str(_log_level(spec.hyperparameters)),
            "SM_TRAINING_ENV": "",  # filled below, it includes the rest
            "SAGEMAKER_REGION": region,
            "AWS_REGION": region,
            "TRAINING_JOB_NAME": spec.name,
            "TRAINING_JOB_ARN": "",
        }
    )
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = str(root / "input" / "data" / channel)
    for key, value in hps.items():
        env[f"SM_HP_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    if spec.instance_count > 1:
        env.update(
            {
                "MASTER_ADDR": master_addr,
                "MASTER_PORT": str(master_port),
                "WORLD_SIZE": str(spec.instance_count),
                "RANK": str(hosts.index(host)),
                "LOCAL_RANK": "0",
                "LOCAL_WORLD_SIZE": "1",
            }
        )
    env["SM_TRAINING_ENV"] = json.dumps(
        {
            "additional_framework_parameters": {},
            "channel_input_dirs": {c: env[f"SM_CHANNEL_{c.upper()}"] for c in channels},
            "current_host": host,
            "current_instance_type": spec.instance_type,
            "hosts": hosts,
            "hyperparameters": hps,
            "input_config_dir": env["SM_INPUT_CONFIG_DIR"],
            "input_data_config": input_data_config(spec),
            "input_dir": env["SM_INPUT_DIR"],
            "is_master": host == hosts[0],
            "job_name": spec.name,
            "log_level": int(env["SM_LOG_LEVEL"]),
            "master_hostname": hosts[0],
            "model_dir": env["SM_MODEL_DIR"],
            "module_dir": env["SM_MODULE_DIR"],
            "module_name": module_name,
            "network_interface_name": "eth0",
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "output_data_dir": env["SM_OUTPUT_DATA_DIR"],
            "output_dir": env["SM_OUTPUT_DIR"],
            "output_intermediate_dir": env["SM_OUTPUT_INTERMEDIATE_DIR"],
            "resource_config": resource_config(spec, host, gpus),
            "user_entry_point": spec.program or "",
        }
    )
    env.update(spec.environment)
    return env


def _log_level(hyperparameters: Mapping[str, str]) -> int:
    raw = hyperparameters.get("sagemaker_container_log_level", "20")
    try:
        return int(json.loads(raw))
    except (TypeError, ValueError):
        return 20
