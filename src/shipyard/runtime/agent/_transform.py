"""The instance agent of a batch transform job: the model's server, and the records fed to it.

The model server (``model_server.py``, as endpoints run it) starts in the sandbox with the model's
environment; the agent streams each input object assigned to this instance (objects are split
across instances by key), splits it into records (SplitType Line) or keeps it whole, applies the
InputFilter, batches records up to MaxPayloadInMB (MultiRecord) or sends them one by one
(SingleRecord), keeps MaxConcurrentTransforms requests in flight, and writes the answers in input
order to ``<input>.out`` — joined with their input and filtered when DataProcessing asks. Memory
stays bounded: a few batches at a time, whatever the input's size. A record the model refuses,
after InvocationsMaxRetries, fails the job naming the input and the records.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import http.client
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from shipyard.core.training import parse_s3_uri, sharded
from shipyard.core.transform import JsonPathFilter, TransformJobSpec, format_record, join_output, parse_record
from shipyard.errors import ValidationError
from shipyard.runtime.agent._agent import Layout
from shipyard.runtime.agent._inputs import relative_key
from shipyard.runtime.agent._io import JobInputError
from shipyard.runtime.agent._processes import SAFE_ENV, signal_group
from shipyard.runtime.contract import TOKEN_ENV, TOKEN_HEADER, Outcome
from shipyard.storage._archives import ChunkReader, extract_tar

_SERVER = Path(__file__).resolve().parents[1] / "model_server.py"
# Native thread pools a model's libraries size by the machine's cores unless told (OpenMP, BLAS).
_THREAD_POOLS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class TransformLayout(Layout):
    kind = "transform"
    pip_layer = False  # a model server, not the user's own process
    spec: TransformJobSpec
    code_dir: str | None = None  # where the model's code is, as the model server sees it
    token = ""  # what the model server wants in X-Shipyard-Token (set as it starts)

    @staticmethod
    def parse_spec(request: Any) -> TransformJobSpec:
        return TransformJobSpec.from_request(request)

    @property
    def model(self) -> Mapping[str, Any]:
        """The job's model as it was when the job was created (image, data, environment, framework)."""
        return self.agent.config.model or {}

    # -- before: the model, its code, its environment --------------------------------------------
    def prepare(self) -> None:
        for sub in ("model", "input/data", "code"):
            (self.ml / sub).mkdir(parents=True, exist_ok=True)
        model = self.model
        if model.get("model_data_url"):
            bucket, key = parse_s3_uri(model["model_data_url"], field="ModelDataUrl")
            _, _, chunks = self.agent.store.read_object(bucket, key)
            try:
                extract_tar(
                    ChunkReader(chunks), self.ml / "model", what=f"model data {model['model_data_url']}"
                )
            except ValidationError as exc:  # the model's archive: the job's ClientError
                raise JobInputError(exc.message) from None
        submit = (model.get("environment") or {}).get("SAGEMAKER_SUBMIT_DIRECTORY", "")
        if submit.startswith("s3://"):
            self.inputs.code(submit, self.ml / "code")
            self.code_dir = "/opt/ml/code"
        elif (self.ml / "model" / "code").is_dir():
            self.code_dir = "/opt/ml/model/code"
        self.agent.folder.hosts.write_text("127.0.0.1 localhost\n")

    def requirements(self) -> str:
        code = self.code_dir
        path = self.ml / code.removeprefix("/opt/ml/") / "requirements.txt" if code else None
        return path.read_text() if path is not None and path.is_file() else ""

    # -- during: the model server, and the records ----------------------------------------------
    def work(self) -> int:
        root = self.agent.root
        model = self.model

        def inside(path: str) -> str:
            return path.replace("/opt/ml", str(root), 1) if path.startswith("/opt/ml") else path

        script = self.agent.folder.path / "model_server.py"
        shutil.copyfile(_SERVER, script)  # the model's Python has no Shipyard to import it from
        workers = self.spec.model_servers(self.agent.config.cpus)
        ports = _free_ports(workers)
        command = [self.agent.python, "-u", str(script), "--model-dir", f"{root}/model"]
        command += ["--port", ",".join(map(str, ports))]
        command += ["--framework", model.get("framework") or "sklearn"]
        program = (model.get("environment") or {}).get("SAGEMAKER_PROGRAM")
        if self.code_dir:
            command += ["--code-dir", inside(self.code_dir)]
        if program:
            command += ["--program", program]
        if self.spec.content_type:  # its reader imported once, before the workers fork
            command += ["--warm-content-type", self.spec.content_type]
        env = {k: v for k, v in os.environ.items() if k in SAFE_ENV}
        env.update({k: inside(v) for k, v in (model.get("environment") or {}).items()})
        env.update(self.spec.environment)
        env.update(self.agent.gpu_environment())
        env["SAGEMAKER_BATCH"] = "true"  # as SageMaker tells its containers: one answer line per record
        env["PYTHONPATH"] = inside(self.code_dir) if self.code_dir else ""
        self.token = secrets.token_urlsafe(24)
        env[TOKEN_ENV] = self.token
        self.agent.command_display = command
        if not self.agent.sandboxed:  # as training and processing jobs say it
            self.log.line("Shipyard: bubblewrap is not available here; running the model server unsandboxed")
        full, cwd = self.agent.sandboxed_command(command, workdir=root / "model", keep=[script])
        if workers > 1:  # the workers share the instance's cores: native thread pools are sized to a share
            share = str(max(1, int(self.agent.config.cpus) // workers))
            for name in _THREAD_POOLS:
                env.setdefault(name, share)
        self.log.line(
            f"Shipyard: starting the model server ({workers} worker(s): MaxConcurrentTransforms "
            f"{self.spec.max_concurrent}, {self.agent.config.cpus:g} cores): {' '.join(command)}"
        )
        started = time.monotonic()
        exits: list[int] = []
        server = threading.Thread(
            target=lambda: exits.append(self.agent.run_user_process(full, cwd, env)),
            name="model-server",
            daemon=True,
        )
        server.start()
        try:
            for port in ports:
                self._wait_healthy(port, exits)
            ready = time.monotonic()
            self.log.line(f"Shipyard: the model server is ready ({(ready - started) * 1000:.0f} ms)")
            count, records = self._transform_all(ports)
            seconds = time.monotonic() - ready
            self.log.line(
                f"Shipyard: transformed {count} input object(s), {records} record(s) in {seconds:.2f} s"
            )
        finally:
            if self.agent.process is not None and self.agent.process.poll() is None:
                signal_group(self.agent.process.pid, signal.SIGKILL)  # its work is done (or failed)
            server.join(timeout=30)
        return 0

    def _wait_healthy(self, port: int, exits: list[int]) -> None:
        deadline = time.monotonic() + self.agent.config.model_startup_seconds
        while self.agent.stop_reason is None:
            if exits:
                raise JobInputError(f"the model server exited with code {exits[0]}; see the job's log")
            try:
                # Workers forked from one loaded server listen from the start: a ping waits there
                # until the model is loaded (a server that exits closes it; a stop kills the server).
                wait = max(2.0, deadline - time.monotonic())
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=wait)
                connection.request("GET", "/ping", headers={TOKEN_HEADER: self.token})
                answer = connection.getresponse()
                text = answer.read().decode(errors="replace")
                connection.close()
                if answer.status == 200:
                    return
                if text.startswith("loading the model failed"):
                    raise JobInputError(text)
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise JobInputError("the model server did not become healthy in time; see the job's log")
            time.sleep(0.05)

    def _inputs(self) -> tuple[str, str, list[str]]:
        """The bucket, the key prefix outputs are named relative to, and this instance's keys."""
        spec = self.spec
        if spec.data_type == "ManifestFile":
            bucket, key = parse_s3_uri(spec.s3_uri, field="S3Uri")
            _, _, chunks = self.agent.store.read_object(bucket, key)
            manifest = json.loads(b"".join(chunks))
            source_bucket, base = parse_s3_uri(manifest[0]["prefix"], field="ManifestFile prefix")
            keys = [base + entry for entry in manifest[1:]]
        else:
            source_bucket, base, keys = self.inputs.list_keys(spec.s3_uri)
        if not keys:
            raise JobInputError(f"No objects found under {spec.s3_uri}")
        return source_bucket, base, sharded(sorted(keys), self.agent.config.host_index, spec.instance_count)

    def _transform_all(self, ports: list[int]) -> tuple[int, int]:
        """Transform this instance's objects; how many, and how many records they held. Each of the
        MaxConcurrentTransforms threads keeps one connection, to the workers in turn."""
        bucket, base, keys = self._inputs()
        local = threading.local()
        turns = itertools.count()

        def invoke(body: bytes) -> tuple[int, bytes]:
            if not hasattr(local, "port"):
                local.port = ports[next(turns) % len(ports)]
            return self._invoke(local, local.port, body)

        records = 0
        with concurrent.futures.ThreadPoolExecutor(self.spec.max_concurrent) as pool:
            for key in keys:
                if self.agent.stop_reason is not None:
                    break
                records += self._transform_object(pool, invoke, bucket, key, base)
        return len(keys), records

    def _invoke(self, local: threading.local, port: int, body: bytes) -> tuple[int, bytes]:
        headers = {"Content-Length": str(len(body)), TOKEN_HEADER: self.token}
        if self.spec.content_type:
            headers["Content-Type"] = self.spec.content_type
        if self.spec.accept:
            headers["Accept"] = self.spec.accept
        status, answer = 0, b""
        for attempt in range(self.spec.max_retries + 1):
            try:
                connection = getattr(local, "connection", None)
                if connection is None:
                    connection = local.connection = http.client.HTTPConnection(
                        "127.0.0.1", port, timeout=self.spec.timeout_seconds
                    )
                    connection.connect()
                    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                connection.request("POST", "/invocations", body, headers)
                response = connection.getresponse()
                status, answer = response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                local.connection = None
                status, answer = 0, str(exc).encode()
            if status == 200 or self.agent.stop_reason is not None:
                break
            if status and 400 <= status < 500:
                break  # the model refuses this input: retrying will not change its mind
            time.sleep(min(2.0, 0.1 * 2**attempt))
        return status, answer

    def _records(self, bucket: str, key: str) -> Iterator[bytes]:
        _, _, chunks = self.agent.store.read_object(bucket, key)
        if self.spec.compression == "Gzip":
            chunks = _gunzip(chunks)
        if self.spec.split_type != "Line":
            yield b"".join(chunks)
            return
        rest = b""
        for chunk in chunks:
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line.strip():
                    yield line.rstrip(b"\r")
        if rest.strip():
            yield rest.rstrip(b"\r")

    def _batches(self, records: Iterator[bytes]) -> Iterator[list[bytes]]:
        spec = self.spec
        if spec.batch_strategy == "SingleRecord":
            for record in records:
                yield [record]
            return
        batch: list[bytes] = []
        size = 0
        for record in records:
            if batch and size + len(record) + 1 > spec.max_payload_bytes:
                yield batch
                batch, size = [], 0
            batch.append(record)
            size += len(record) + 1
        if batch:
            yield batch

    def _blocks(self, bucket: str, key: str) -> Iterator[bytes]:
        """Whole lines, up to MaxPayloadInMB at a time: the records of a MultiRecord batch that
        needs no filtering, cut without looking at each one."""
        limit = self.spec.max_payload_bytes
        _, _, chunks = self.agent.store.read_object(bucket, key)
        if self.spec.compression == "Gzip":
            chunks = _gunzip(chunks)
        buffer = bytearray()
        for chunk in chunks:
            buffer += chunk
            while len(buffer) >= limit:
                cut = buffer.rfind(b"\n", 0, limit) + 1 or buffer.find(b"\n") + 1 or len(buffer)
                yield bytes(buffer[:cut])
                del buffer[:cut]
        if buffer.strip():
            yield bytes(buffer) if buffer.endswith(b"\n") else bytes(buffer) + b"\n"

    def _requests(
        self, bucket: str, key: str, in_filter: JsonPathFilter
    ) -> Iterator[tuple[bytes, int, list[bytes] | None]]:
        """Request bodies, how many records each holds, and the records when they must be kept."""
        spec = self.spec
        if spec.split_type == "Line" and spec.batch_strategy == "MultiRecord" and not spec.filters_records:
            for block in self._blocks(bucket, key):
                yield block, block.count(b"\n"), None
            return
        for batch in self._batches(self._records(bucket, key)):
            if in_filter.path != "$":
                sent = [
                    format_record(in_filter.apply(parse_record(r, spec.content_type)), spec.content_type)
                    for r in batch
                ]
            else:
                sent = batch
            yield b"\n".join(sent) + (b"\n" if spec.split_type == "Line" else b""), len(batch), batch

    def _transform_object(self, pool: Any, invoke: Any, bucket: str, key: str, base: str) -> int:
        """Transform one object into ``<input>.out``; how many records it held."""
        spec = self.spec
        in_filter = JsonPathFilter.parse(spec.input_filter)
        out_filter = JsonPathFilter.parse(spec.output_filter)
        out_bucket, out_prefix = parse_s3_uri(spec.output_path, field="TransformOutput.S3OutputPath")
        out_key = f"{out_prefix.rstrip('/')}/{relative_key(key, base)}.out".lstrip("/")
        separator = b"\n" if spec.assemble_with == "Line" else b""
        source = f"s3://{bucket}/{key}"
        pending: collections.deque[tuple[int, int, list[bytes] | None, Any]] = collections.deque()
        first = 1

        def drain(writer: Any, keep: int) -> None:
            while len(pending) > keep:
                start, count, records, future = pending.popleft()
                status, answer = future.result()
                if status != 200:
                    where = f"record {start}" if count == 1 else f"records {start}-{start + count - 1}"
                    raise JobInputError(
                        f"Transforming {source} failed at {where}: the model answered "
                        f"{status or 'nothing'}: {answer.decode(errors='replace')[:300]}"
                    )
                if records is None:
                    writer.write(answer.rstrip(b"\n") + separator if separator else answer)
                else:
                    writer.write(self._assemble(records, answer, out_filter, separator, source, start))

        with self.agent.store.open_writer(out_bucket, out_key) as writer:
            for body, count, records in self._requests(bucket, key, in_filter):
                if self.agent.stop_reason is not None:
                    return first - 1
                pending.append((first, count, records, pool.submit(invoke, body)))
                first += count
                drain(writer, 2 * spec.max_concurrent)  # a few batches in flight, memory bounded
            drain(writer, 0)
            writer.commit()
        return first - 1

    def _assemble(
        self,
        batch: list[bytes],
        answer: bytes,
        out_filter: JsonPathFilter,
        separator: bytes,
        source: str,
        start: int,
    ) -> bytes:
        spec = self.spec
        if not (spec.join_source == "Input" or out_filter.path != "$"):
            return answer.rstrip(b"\n") + separator if separator else answer
        outputs = answer.rstrip(b"\n").split(b"\n") if len(batch) > 1 else [answer.rstrip(b"\n")]
        if len(outputs) != len(batch):
            raise JobInputError(
                f"Transforming {source} at records {start}-{start + len(batch) - 1}: the model answered "
                f"{len(outputs)} line(s) for {len(batch)} record(s), so they cannot be joined"
            )
        content = spec.accept or spec.content_type
        lines = []
        for record, output in zip(batch, outputs, strict=True):
            value: Any
            if spec.join_source == "Input":
                value = join_output(parse_record(record, spec.content_type), output, spec.content_type)
            else:
                value = parse_record(output, content)
            lines.append(
                format_record(
                    out_filter.apply(value), spec.content_type if spec.join_source == "Input" else content
                )
            )
        return b"\n".join(lines) + (separator or b"\n")

    def upload(self, outcome: Outcome) -> dict[str, str]:
        return {}  # outputs were written as they came


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in chunks:
        yield inflate.decompress(chunk)
    yield inflate.flush()


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together while they are chosen)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports
