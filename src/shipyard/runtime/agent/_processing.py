"""A processing job's instance: SageMaker's processing layout and contract.

Inputs are fetched to their LocalPath under /opt/ml/processing (S3Prefix or ManifestFile,
FullyReplicated or ShardedByS3Key, Gzip-decompressed when asked); /opt/ml/config holds
resourceconfig.json and processingjobconfig.json; the ContainerEntrypoint runs with
ContainerArguments and the job's Environment, the environment's Python first on PATH (so
``python3`` is the image's); outputs are uploaded as objects under their S3Uri, at the end or,
for Continuous ones, as they appear.
"""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from shipyard.core.processing import ProcessingJobSpec
from shipyard.core.training import parse_s3_uri
from shipyard.errors import ValidationError
from shipyard.runtime import container
from shipyard.runtime.agent._agent import Layout
from shipyard.runtime.agent._inputs import inside, relative_key
from shipyard.runtime.agent._io import JobInputError
from shipyard.runtime.agent._processes import SAFE_ENV
from shipyard.runtime.agent._sync import FolderSync, shown_path
from shipyard.runtime.contract import Outcome


class ProcessingLayout(Layout):
    kind = "processing"
    spec: ProcessingJobSpec

    @staticmethod
    def parse_spec(request: Any) -> ProcessingJobSpec:
        return ProcessingJobSpec.from_request(request)

    def prepare(self) -> None:
        plans = [self._plan_input(item) for item in self.spec.inputs]  # refused before any folder
        config = self.agent.config
        for sub in ("input/data", "config", "processing"):
            (self.ml / sub).mkdir(parents=True, exist_ok=True)
        hosts = container.hosts_for(self.spec.instance_count)
        (self.ml / "config" / "resourceconfig.json").write_text(
            json.dumps(
                {"current_host": config.host, "hosts": hosts, "network_interface_name": "eth0"}
                | ({"current_gpus": [g.uuid for g in config.gpu_devices]} if config.gpu_devices else {})
            )
        )
        (self.ml / "config" / "processingjobconfig.json").write_text(
            json.dumps(self.spec.job_config(config.arn))
        )
        self.agent.folder.hosts.write_text(
            "127.0.0.1 localhost\n" + "".join(f"{config.master_addr} {h}\n" for h in hosts)
        )
        for item, plan in zip(self.spec.inputs, plans, strict=True):
            count = self._fetch_input(item, *plan)
            self.log.line(
                f"Shipyard: input {item.name!r}: {count} file(s) from {item.s3_uri} at {item.local_path}"
            )
        for output in self.spec.outputs:
            self.under_ml(output.local_path).mkdir(parents=True, exist_ok=True)

    def requirements(self) -> str:
        """A requirements.txt in the code input, as a file or in the sourcedir.tar.gz the SDK's
        FrameworkProcessor sends: the environment is built with it, so that the script's own
        ``pip install -r requirements.txt`` finds everything there already."""
        for item in self.spec.inputs:
            folder = self.under_ml(item.local_path)
            if (folder / "requirements.txt").is_file():
                return (folder / "requirements.txt").read_text()
            archive = folder / "sourcedir.tar.gz"
            if archive.is_file():
                return _archived_requirements(archive, item.s3_uri)
        return ""

    def _plan_input(self, item: Any) -> tuple[str, list[tuple[str, Path]]]:
        """The bucket and (key, file) pairs of an input, every file checked to land in its folder."""
        if item.data_type == "ManifestFile":
            bucket, key = parse_s3_uri(item.s3_uri, field="S3Uri")
            _, _, chunks = self.agent.store.read_object(bucket, key)
            source_bucket, base, entries = manifest_entries(b"".join(chunks), item.s3_uri)
            keys = [base + entry for entry in entries]
        else:
            source_bucket, base, keys = self.inputs.list_keys(item.s3_uri)
            if not keys:
                raise JobInputError(f"No objects found under {item.s3_uri} for input {item.name!r}")
        target = self.under_ml(item.local_path)
        what = f"input {item.name!r} ({item.s3_uri})"
        keys = self.inputs.shard(keys, item.distribution)
        return source_bucket, [(key, inside(target, relative_key(key, base), what)) for key in keys]

    def _fetch_input(self, item: Any, source_bucket: str, files: list[tuple[str, Path]]) -> int:
        self.under_ml(item.local_path).mkdir(parents=True, exist_ok=True)
        store = self.agent.store
        for key, path in files:
            if item.compression == "Gzip":
                path = path.with_name(path.name.removesuffix(".gz"))
                path.parent.mkdir(parents=True, exist_ok=True)
                _, _, chunks = store.read_object(source_bucket, key)
                path.write_bytes(gzip.decompress(b"".join(chunks)))
            else:
                self.inputs.fetch_object(
                    source_bucket, key, path, link=False
                )  # processing inputs are writable
        return len(files)

    def syncs(self) -> list[FolderSync]:
        return [
            self.sync(self.under_ml(o.local_path), o.s3_uri, f"output {o.name!r}", **self._shown(o))
            for o in self.spec.outputs
            if o.upload_mode == "Continuous"
        ]

    def _shown(self, output: Any) -> dict[str, Any]:
        """How an output's FolderSync names the folder in the log, and where it stops trusting it."""
        return {"shown": shown_path(self.ml, self.under_ml(output.local_path)), "within": self.ml}

    def work(self) -> int:
        agent = self.agent
        command = [*self.spec.entrypoint, *self.spec.arguments]
        if not agent.sandboxed:  # the paths a script was given are under the real folder
            root = str(agent.root)
            command = [c.replace("/opt/ml", root, 1) if c.startswith("/opt/ml/") else c for c in command]
            self.log.line(
                "Shipyard: bubblewrap is not available here; running unsandboxed, with /opt/ml at "
                f"{self.ml} (scripts that hard-code /opt/ml paths will not find them)"
            )
        agent.command_display = command
        full, cwd = agent.sandboxed_command(command, workdir=agent.root / "processing")
        self.log.line(f"Shipyard: invoking {' '.join(command)}")
        with agent.environment_in_use():
            return agent.run_user_process(full, cwd, self.environment())

    def environment(self) -> dict[str, str]:
        agent = self.agent
        env = {k: v for k, v in os.environ.items() if k in SAFE_ENV}
        env.update(agent.aws_environment())
        env.update(agent.pip_environment())
        env.update(self.spec.environment)
        env.update(agent.python_environment(env.get("PATH", "/usr/bin:/bin")))  # `python3` is the image's
        env["PYTHONUNBUFFERED"] = "1"
        env["PROCESSING_JOB_ARN"] = agent.config.arn
        env.update(agent.gpu_environment())
        return env

    def upload(self, outcome: Outcome) -> dict[str, str]:
        for output in self.spec.outputs:
            if output.upload_mode == "Continuous":
                continue  # its FolderSync made the last pass
            folder = self.under_ml(output.local_path)
            count = self.sync(folder, output.s3_uri, "output", interval=0, **self._shown(output)).sync()
            self.log.line(f"Shipyard: output {output.name!r}: uploaded {count} file(s) to {output.s3_uri}")
        return {}


def manifest_entries(body: bytes, uri: str) -> tuple[str, str, list[str]]:
    """A ManifestFile's bucket, key prefix and entries (``[{"prefix": "s3://..."}, "rel", ...]``),
    refused (naming the manifest and the entry) unless every entry is a path below the prefix."""
    try:
        manifest = json.loads(body)
    except ValueError:
        manifest = None
    if (
        not isinstance(manifest, list)
        or not manifest
        or not isinstance(manifest[0], dict)
        or not isinstance(manifest[0].get("prefix"), str)
    ):
        raise JobInputError(
            f'ManifestFile {uri} is not a JSON list of a {{"prefix": "s3://..."}} object '
            "followed by keys relative to it"
        )
    try:
        bucket, base = parse_s3_uri(manifest[0]["prefix"], field="ManifestFile prefix")
    except ValidationError as exc:
        raise JobInputError(f"ManifestFile {uri}: {exc.message}") from None
    entries = manifest[1:]
    for entry in entries:
        if not isinstance(entry, str):
            raise JobInputError(
                f"ManifestFile {uri}: entry {entry!r} is not a string (a key relative to the prefix)"
            )
        parts = entry.split("/")
        if not entry or entry.startswith("/") or ".." in parts or "\x00" in entry:
            raise JobInputError(
                f"ManifestFile {uri}: entry {entry!r} is not a path below the prefix (it is empty or "
                "absolute, or has a '..' part)"
            )
    return bucket, base, entries


REQUIREMENTS_LIMIT = 1024 * 1024  # bytes of a requirements.txt read from a code archive


def _archived_requirements(archive: Path, uri: str) -> str:
    """The requirements.txt in a FrameworkProcessor's sourcedir.tar.gz ("" for none), read from
    the archive (nothing is extracted: the job's own script does that, in its sandbox)."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.name.removeprefix("./") == "requirements.txt" and member.isfile():
                    if member.size > REQUIREMENTS_LIMIT:
                        raise JobInputError(
                            f"{uri}: requirements.txt in sourcedir.tar.gz is {member.size} bytes, "
                            f"more than {REQUIREMENTS_LIMIT}"
                        )
                    extracted = tar.extractfile(member)
                    return extracted.read().decode(errors="replace") if extracted else ""
    except (tarfile.TarError, EOFError, OSError) as exc:  # an OSError's text may hold host paths
        why = f": {exc}" if isinstance(exc, tarfile.TarError) else ""
        raise JobInputError(f"{uri}: sourcedir.tar.gz is not a valid tar archive{why}") from None
    return ""
