"""A training job's instance: SageMaker's training layout (/opt/ml as the training toolkit lays it
out), the ``SM_*`` environment, the entry point or built-in algorithm, model and output uploads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from shipyard.core.algorithms import xgboost
from shipyard.core.training import TrainingJobSpec, parse_s3_uri, to_cmd_args
from shipyard.runtime import container, torchrun
from shipyard.runtime.agent._agent import Layout
from shipyard.runtime.agent._conda import conda_requirements, path_entry
from shipyard.runtime.agent._io import JobInputError
from shipyard.runtime.agent._processes import SAFE_ENV
from shipyard.runtime.agent._sync import FolderSync, shown_path
from shipyard.runtime.contract import Outcome
from shipyard.storage._archives import pack_directory

_XGBOOST = Path(__file__).resolve().parents[1] / "algorithms" / "xgboost_train.py"
_TORCHRUN = Path(torchrun.__file__)


class TrainingLayout(Layout):
    kind = "training"
    spec: TrainingJobSpec

    @staticmethod
    def parse_spec(request: Any) -> TrainingJobSpec:
        return TrainingJobSpec.from_request(request)

    @property
    def checkpoints(self) -> Path:
        """CheckpointConfig.LocalPath (under /opt/ml, checked at creation) on this instance."""
        return self.under_ml(self.spec.checkpoint_local_path)

    def prepare(self) -> None:
        for sub in ("input/config", "input/data", "model", "output/data", "output/intermediate", "code"):
            (self.ml / sub).mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        config = self.agent.config
        for name, content in container.config_files(
            self.spec, config.host, [g.uuid for g in config.gpu_devices]
        ).items():
            (self.ml / "input" / "config" / name).write_text(json.dumps(content))
        self.agent.folder.hosts.write_text(
            "127.0.0.1 localhost\n"
            + "".join(
                f"{config.master_addr if h == 'algo-1' else '127.0.0.1'} {h}\n"
                for h in container.hosts_for(self.spec.instance_count)
            )
        )
        for channel in self.spec.channels:
            target = self.ml / "input" / "data" / channel.name
            count = self.inputs.channel(
                channel.name, channel.s3_uri, channel.distribution, target, link=self.agent.run_as is not None
            )
            self.log.line(f"Shipyard: channel {channel.name!r}: {count} file(s) from {channel.s3_uri}")
        if self.spec.submit_directory:
            self.inputs.code(self.spec.submit_directory, self.ml / "code")
        if self.spec.checkpoint_s3_uri:
            # The folder, not every key starting with its characters: the job's credentials may
            # list under <S3Uri>/ only (on a Slurm or Ray node, the server's S3 API checks them).
            folder = self.spec.checkpoint_s3_uri.rstrip("/") + "/"
            restored = self.inputs.prefix(folder, self.checkpoints, link=False)
            if restored:
                self.log.line(
                    f"Shipyard: restored {restored} checkpoint file(s) from {self.spec.checkpoint_s3_uri}"
                )

    def requirements(self) -> str:
        """The code's requirements.txt, installed into the job's environment before it starts,
        and what pip installs of a remote function's conda environment.yml (_conda.py)."""
        path = self.ml / "code" / "requirements.txt"
        code = path.read_text() if path.is_file() else ""
        conda = conda_requirements(self.ml, self.spec.arguments, self.log.line)
        return f"{code.rstrip()}\n{conda}".lstrip() if conda else code

    def syncs(self) -> list[FolderSync]:
        if not self.spec.checkpoint_s3_uri:
            return []
        return [
            self.sync(
                self.checkpoints,
                self.spec.checkpoint_s3_uri,
                "checkpoint",
                skip_present=True,
                shown=shown_path(self.ml, self.checkpoints),
                within=self.ml,
            )
        ]

    def work(self) -> int:
        agent = self.agent
        root = agent.root
        command = self.command()
        agent.command_display = command
        if not agent.sandboxed:
            self.log.line(
                "Shipyard: bubblewrap is not available here; running unsandboxed, with /opt/ml at "
                f"{self.ml} (scripts that hard-code /opt/ml paths will not find them)"
            )
        full, cwd = agent.sandboxed_command(command, workdir=root / "code")
        self.log.line(f"Shipyard: invoking {' '.join(command)}")
        with agent.environment_in_use():
            return agent.run_user_process(full, cwd, self.environment())

    def environment(self) -> dict[str, str]:
        agent, config, root = self.agent, self.agent.config, self.agent.root
        env = {k: v for k, v in os.environ.items() if k in SAFE_ENV}
        env.update(
            container.training_environment(
                self.spec,
                config.host,
                root=root,
                num_cpus=max(1, int(config.cpus)),
                num_gpus=config.gpus,
                region=config.region,
                master_addr=config.master_addr,
                master_port=config.master_port,
                gpus=[g.uuid for g in config.gpu_devices],
            )
        )
        env["TRAINING_JOB_ARN"] = config.arn
        env.update(agent.gpu_environment())
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(root / "code")
        env.update(agent.python_environment(env.get("PATH", "/usr/bin:/bin")))  # `python` is the image's
        stand_in = path_entry(self.ml, root)  # a remote function's `conda` (_conda.py)
        if stand_in:
            env["PATH"] = f"{stand_in}:{env['PATH']}"
        return {**agent.aws_environment(), **agent.pip_environment(), **env}

    def command(self) -> list[str]:
        root, python = self.agent.root, self.agent.job_python
        if self.spec.entrypoint:
            return [*self.spec.entrypoint, *self.spec.arguments]
        program = self.spec.program
        if not program and self.agent.config.builtin == "xgboost":
            shutil.copyfile(_XGBOOST, self.ml / "code" / _XGBOOST.name)
            model_format = xgboost.model_file_format(self.spec.image or "")
            return [python, str(root / "code" / _XGBOOST.name), "--model-format", model_format]
        if not program:
            raise JobInputError(
                f"Image {self.spec.image!r} has no built-in algorithm in Shipyard yet: give a script "
                "(the sagemaker_program hyperparameter, set by the SDK's entry_point) or "
                "AlgorithmSpecification.ContainerEntrypoint"
            )
        args = to_cmd_args(self.spec.user_hyperparameters)
        if not (self.ml / "code" / program).is_file():
            raise JobInputError(f"Entry point {program!r} is not in the source directory")
        if program.endswith(".sh"):
            if self.spec.torch_distributed:
                self.log.line(
                    "Shipyard: torch_distributed needs a Python entry point: started once, as it is"
                )
            return ["/bin/sh", str(root / "code" / program), *args]
        command = [python, str(root / "code" / program), *args]
        return self.torchrun(command) if self.spec.torch_distributed else command

    def torchrun(self, command: list[str]) -> list[str]:
        """``command`` started torchrun's way: once per GPU of this instance (one on an instance
        without GPUs), ranked across all instances (runtime/torchrun.py)."""
        config = self.agent.config
        nproc = len(config.gpu_devices) or config.gpus or 1
        nnodes = self.spec.instance_count
        shutil.copyfile(_TORCHRUN, self.ml / torchrun.NAME)
        gpus = f"{nproc} GPU{'s' if nproc != 1 else ''}" if config.gpus else "no GPU: one process"
        self.log.line(
            f"Shipyard: torch_distributed: {nproc} process{'es' if nproc != 1 else ''} on {config.host} "
            f"({gpus}), ranks {config.host_index * nproc}-{(config.host_index + 1) * nproc - 1} of "
            f"{nnodes * nproc}; MASTER_ADDR {config.master_addr}, MASTER_PORT {config.master_port}"
        )
        return [
            self.agent.job_python,
            str(self.agent.root / torchrun.NAME),
            f"--nproc={nproc}",
            f"--nnodes={nnodes}",
            f"--node-rank={config.host_index}",
            f"--master-addr={config.master_addr}",
            f"--master-port={config.master_port}",
            f"--run-id={self.spec.name}",
            f"--grace={config.stop_grace_seconds:g}",
            "--",
            *command,
        ]

    def upload(self, outcome: Outcome) -> dict[str, str]:
        artifacts: dict[str, str] = {}
        if self.agent.config.host_index != 0:
            return artifacts  # only algo-1's model and output data are kept
        model_dir = self.ml / "model"
        if outcome != Outcome.FAILED or any(model_dir.iterdir()):
            artifacts["model_artifacts"] = self.upload_tar(model_dir, self.spec.model_artifacts_uri())
        output_dir = self.ml / "output" / "data"
        if any(output_dir.iterdir()):
            artifacts["output_artifacts"] = self.upload_tar(output_dir, self.spec.output_data_uri())
        return artifacts

    def upload_tar(self, folder: Path, uri: str) -> str:
        """``folder`` packed as a tar.gz at ``uri``; what the job planted (links, hard links,
        special files) is skipped, and the log says so."""
        bucket, key = parse_s3_uri(uri, field="S3OutputPath")
        shown = shown_path(self.ml, folder)

        def skipped(relative: str, why: str) -> None:
            self.log.line(f"Shipyard: skipped {shown}/{relative}: {why}")

        with self.agent.store.open_writer(bucket, key, content_type="application/x-tar") as writer:
            count = pack_directory(folder, writer, skipped=skipped, within=self.ml)  # type: ignore[arg-type]
            writer.commit()
        self.log.line(f"Shipyard: uploaded {count} file(s) from {folder.relative_to(self.ml)} to {uri}")
        return uri
