"""Serving without AWS notions: ``Model`` → ``deploy()`` → an ``Endpoint`` you ``predict()`` with,
and ``Transformer`` for batch scoring of a whole data set.

What ``predict`` sends follows the data: a pandas DataFrame goes as CSV rows (no header, as
SageMaker's containers read CSV), a numpy array as ``application/x-npy``, bytes and str as they
are (``text/csv`` unless told), anything else as JSON. The answer is read by its content type:
JSON into Python values, CSV and NPY into a numpy array. A serializer given to the endpoint or
the call overrides the choice.
"""

from __future__ import annotations

import html
import io
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

from shipyard.errors import ValidationError
from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._jobs import Job, announce
from shipyard.sdk._progress import Progress
from shipyard.sdk._training import _source_archive, _upload_local, image_for, unique_name

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
NPY_TYPE = "application/x-npy"


class Serializer(Protocol):
    content_type: str

    def serialize(self, data: Any) -> bytes: ...


class JSONSerializer:
    """Python values, numpy arrays and pandas frames as JSON (arrays and frames as nested lists)."""

    content_type = JSON_TYPE

    def serialize(self, data: Any) -> bytes:
        if hasattr(data, "to_numpy"):  # pandas
            data = data.to_numpy()
        if hasattr(data, "tolist"):  # numpy
            data = data.tolist()
        return json.dumps(data).encode()


class CSVSerializer:
    """Rows of numbers as CSV without a header: frames, arrays, a list of rows or one row."""

    content_type = CSV_TYPE

    def serialize(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        if isinstance(data, str):
            return data.encode()
        if hasattr(data, "to_csv"):  # pandas
            return str(data.to_csv(header=False, index=False)).encode()
        if hasattr(data, "tolist"):  # numpy
            data = data.tolist()
        rows = data if data and isinstance(data[0], list | tuple) else [data]
        return "".join(",".join(str(v) for v in row) + "\n" for row in rows).encode()


class NumpySerializer:
    """An array in numpy's own format (exact dtype and shape; never pickled)."""

    content_type = NPY_TYPE

    def serialize(self, data: Any) -> bytes:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(data), allow_pickle=False)
        return buffer.getvalue()


def _serializer_for(data: Any) -> Serializer:
    if hasattr(data, "to_csv"):
        return CSVSerializer()
    if type(data).__module__ == "numpy":
        return NumpySerializer()
    if isinstance(data, bytes | str):
        return CSVSerializer()
    return JSONSerializer()


def deserialize(body: bytes, content_type: str) -> Any:
    """An answer by its content type: JSON → Python values, CSV and NPY → a numpy array,
    anything else → the bytes."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == JSON_TYPE:
        return json.loads(body)
    if kind == NPY_TYPE:
        import numpy as np

        return np.load(io.BytesIO(body), allow_pickle=False)
    if kind == CSV_TYPE:
        import numpy as np

        rows = [line.split(",") for line in body.decode().splitlines() if line.strip()]
        try:
            array = np.array(rows, dtype=float)
        except ValueError:  # not all numbers: strings, as they came
            array = np.array(rows, dtype=object)
        return array.reshape(-1) if array.ndim == 2 and 1 in array.shape else array
    return body


class Model:
    """A model archive and the code and image that serve it.

    Args:
        model_data: ``s3://`` URI or local path of the model archive (model.tar.gz).
        image / framework / framework_version: What serves it (as for :class:`Estimator`).
        entry_point / source_dir: An inference script (``model_fn``, ``input_fn``, ``predict_fn``,
            ``output_fn``); without one, the framework's defaults load and call the model.
        environment: Environment variables for the model server.
        name: The model's name on the server (default: made up from the archive's).
    """

    def __init__(
        self,
        model_data: str | Path,
        *,
        image: str | None = None,
        framework: str = "sklearn",
        framework_version: str | None = None,
        entry_point: str | Path | None = None,
        source_dir: str | Path | None = None,
        environment: Mapping[str, str] | None = None,
        name: str | None = None,
        connection: Connection | None = None,
    ) -> None:
        self.image = image_for(framework, framework_version, image)
        self.model_data = str(model_data)
        self.entry_point = Path(entry_point) if entry_point is not None else None
        self.source_dir = Path(source_dir) if source_dir is not None else None
        if self.entry_point and self.source_dir and not self.entry_point.is_absolute():
            self.entry_point = self.source_dir / self.entry_point
        if self.entry_point is not None and not self.entry_point.is_file():
            raise ValidationError(
                f"entry_point {str(self.entry_point)!r} is not a file",
                field="entry_point",
                value=str(entry_point),
            )
        self.environment = dict(environment or {})
        self.name = name
        self._connection = connection

    @property
    def connection(self) -> Connection:
        """The server it runs on: the one given, else :func:`connect`'s."""
        return self._connection or connect()

    def create(self) -> str:
        """Register the model on the server (once); its name."""
        if self.name is not None and self._exists(self.name):
            return self.name
        connection = self.connection
        data = self.model_data
        if not data.startswith("s3://"):
            path = Path(data)
            data = _upload_local(connection, path) + path.name
        environment = dict(self.environment)
        if self.entry_point is not None:
            archive = _source_archive(self.entry_point, self.source_dir, ())
            import hashlib

            key = f"code/{hashlib.sha256(archive).hexdigest()[:32]}/sourcedir.tar.gz"
            connection.client("s3").put_object(Bucket=connection.bucket, Key=key, Body=archive)
            environment["SAGEMAKER_PROGRAM"] = self.entry_point.relative_to(
                self.source_dir or self.entry_point.parent
            ).as_posix()
            environment["SAGEMAKER_SUBMIT_DIRECTORY"] = f"s3://{connection.bucket}/{key}"
        self.name = self.name or unique_name("model")
        container: dict[str, Any] = {"Image": self.image, "ModelDataUrl": data}
        if environment:
            container["Environment"] = environment
        connection.client("sagemaker").create_model(
            ModelName=self.name, ExecutionRoleArn=connection.role, PrimaryContainer=container
        )
        return self.name

    def _exists(self, name: str) -> bool:
        sm = self.connection.client("sagemaker")
        try:
            sm.describe_model(ModelName=name)
        except sm.exceptions.ClientError:
            return False
        return True

    def deploy(
        self,
        *,
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        name: str | None = None,
        wait: bool = True,
        serializer: Serializer | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Endpoint:
        """Serve the model on a new endpoint; with ``wait``, return once it answers. A model not
        yet on the server is registered under the endpoint's name (and deleted with it). ``tags``
        go on the endpoint (its cost is reported by them)."""
        endpoint = name or unique_name(self.name or "model")
        if self.name is None:
            self.name = endpoint
        model = self.create()
        variants = [
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": instance_count,
                "InstanceType": instance_type,
            }
        ]
        announce(
            self.connection, "endpoint", {"ProductionVariants": variants}, f"Endpoint {endpoint}", show=wait
        )
        sm = self.connection.client("sagemaker")
        sm.create_endpoint_config(EndpointConfigName=endpoint, ProductionVariants=variants)
        sm.create_endpoint(
            EndpointName=endpoint,
            EndpointConfigName=endpoint,
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )
        handle = Endpoint(endpoint, self.connection, serializer=serializer)
        if wait:
            handle.wait()
        return handle

    def transformer(
        self,
        *,
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        content_type: str = CSV_TYPE,
        accept: str | None = None,
        split_type: str = "Line",
        max_payload_mb: int = 6,
        output_path: str | None = None,
    ) -> Transformer:
        """Batch scoring of whole data sets with this model."""
        return Transformer(
            self,
            instance_type=instance_type,
            instance_count=instance_count,
            content_type=content_type,
            accept=accept,
            split_type=split_type,
            max_payload_mb=max_payload_mb,
            output_path=output_path,
        )

    def delete(self) -> None:
        if self.name is not None:
            self.connection.client("sagemaker").delete_model(ModelName=self.name)

    def __repr__(self) -> str:
        return f"Model({self.name or self.model_data!r}, image={self.image!r})"


class Endpoint:
    """A live endpoint: ``predict(data)``, its status and cost, ``delete()``.

    Args:
        name: The endpoint's name.
        serializer: How ``predict`` sends data (default: chosen by the data's type).
    """

    def __init__(
        self, name: str, connection: Connection | None = None, *, serializer: Serializer | None = None
    ) -> None:
        self.name = name
        self.connection = connection or connect()
        self.serializer = serializer

    def describe(self) -> dict[str, Any]:
        """The SageMaker DescribeEndpoint answer."""
        answer = dict(self.connection.client("sagemaker").describe_endpoint(EndpointName=self.name))
        answer.pop("ResponseMetadata", None)
        return answer

    @property
    def status(self) -> str:
        """Creating, InService, Updating, Failed or Deleting."""
        return str(self.describe()["EndpointStatus"])

    def wait(self, *, show: bool = True, poll: float = 0.2) -> Endpoint:
        """Until the endpoint is in service (a clear error if it failed)."""
        with Progress(f"Endpoint {self.name}", show=show) as progress:
            while (described := self.describe())["EndpointStatus"] in ("Creating", "Updating"):
                progress.update(described["EndpointStatus"])
                time.sleep(poll)
            status = described["EndpointStatus"]
            progress.done(f"{status} after {progress.elapsed:.1f} s")
        if status != "InService":
            raise ValidationError(
                f"Endpoint {self.name!r} is {status}: {described.get('FailureReason')}",
                field="EndpointName",
                value=self.name,
            )
        return self

    def predict(
        self,
        data: Any,
        *,
        serializer: Serializer | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        raw: bool = False,
    ) -> Any:
        """Ask the model about ``data``; its answer, deserialized by content type (the bytes with
        ``raw``)."""
        chosen = serializer or self.serializer or _serializer_for(data)
        kwargs: dict[str, Any] = {
            "EndpointName": self.name,
            "Body": chosen.serialize(data),
            "ContentType": content_type or chosen.content_type,
        }
        if accept:
            kwargs["Accept"] = accept
        answer = self.connection.client("sagemaker-runtime").invoke_endpoint(**kwargs)
        body = answer["Body"].read()
        return body if raw else deserialize(body, answer.get("ContentType", ""))

    def predict_stream(
        self,
        data: Any,
        *,
        serializer: Serializer | None = None,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> Iterator[bytes]:
        """Ask the model about ``data`` and yield its answer's parts as the model makes them
        (InvokeEndpointWithResponseStream): a handler that returns an iterator (a ``predict_fn``
        that yields, say) streams each item; any other handler's answer comes as one part. A
        handler that fails midway raises botocore's ``EventStreamError`` (``ModelStreamError``)
        at that point, after the parts it made."""
        chosen = serializer or self.serializer or _serializer_for(data)
        kwargs: dict[str, Any] = {
            "EndpointName": self.name,
            "Body": chosen.serialize(data),
            "ContentType": content_type or chosen.content_type,
        }
        if accept:
            kwargs["Accept"] = accept
        answer = self.connection.client("sagemaker-runtime").invoke_endpoint_with_response_stream(**kwargs)
        for event in answer["Body"]:
            if "PayloadPart" in event:
                yield event["PayloadPart"]["Bytes"]

    @property
    def cost(self) -> float:
        """What its instances have cost so far, at the catalog's price."""
        return float(self.connection.native(f"endpoints/{self.name}")["cost_usd"])

    def delete(self) -> None:
        """Delete the endpoint, and what ``deploy`` made for it: the configuration and model named
        after it. Models and configurations with names of their own are kept."""
        sm = self.connection.client("sagemaker")
        config = self.describe()["EndpointConfigName"]
        models = [
            v["ModelName"]
            for v in sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
        ]
        sm.delete_endpoint(EndpointName=self.name)
        if config == self.name:
            sm.delete_endpoint_config(EndpointConfigName=config)
        if self.name in models:
            sm.delete_model(ModelName=self.name)

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, status={self.status!r})"

    def _repr_html_(self) -> str:
        described = self.describe()
        variants = "".join(
            f"<tr><td>{html.escape(v['VariantName'])}</td><td>{v.get('CurrentInstanceCount', 0)}</td>"
            f"<td>{v.get('CurrentWeight', 0):g}</td></tr>"
            for v in described.get("ProductionVariants", [])
        )
        return (
            f"<b>Endpoint</b> {html.escape(self.name)} — {html.escape(described['EndpointStatus'])}"
            f"<table><tr><th>variant</th><th>instances</th><th>weight</th></tr>{variants}</table>"
        )


# The SageMaker SDK's name for the same thing.
Predictor = Endpoint


class Transformer:
    """Batch scoring: a model over every record of a data set, results into the object store.

    Args:
        model: A :class:`Model` (created on the server if it is not yet) or a model's name.
        content_type: How the records are written (``text/csv`` lines by default).
        accept: How results are written (default: as the records are).
        split_type: ``"Line"`` (one record a line), ``"RecordIO"`` or ``"None"`` (whole files).
        max_payload_mb: The most a request to the model may carry.
        output_path: Where results go (default: ``s3://shipyard/transform/<job>/``).
    """

    def __init__(
        self,
        model: Model | str,
        *,
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        content_type: str = CSV_TYPE,
        accept: str | None = None,
        split_type: str = "Line",
        max_payload_mb: int = 6,
        output_path: str | None = None,
        connection: Connection | None = None,
    ) -> None:
        self.model = model
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.content_type = content_type
        self.accept = accept
        self.split_type = split_type
        self.max_payload_mb = max_payload_mb
        self.output_path = output_path
        self._connection = connection or (model.connection if isinstance(model, Model) else None)

    @property
    def connection(self) -> Connection:
        """The server it runs on: the one given, else :func:`connect`'s."""
        return self._connection or connect()

    def transform(
        self, data: str | Path, *, name: str | None = None, wait: bool = True, logs: bool = True
    ) -> TransformJob:
        """Score ``data`` (a local file or folder, uploaded once, or an ``s3://`` URI)."""
        connection = self.connection
        model = self.model.create() if isinstance(self.model, Model) else self.model
        source = str(data)
        uri = source if source.startswith("s3://") else _upload_local(connection, Path(source))
        job_name = name or unique_name("transform")
        output: dict[str, Any] = {
            "S3OutputPath": self.output_path or f"s3://{connection.bucket}/transform/{job_name}/"
        }
        output["Accept"] = self.accept or self.content_type  # CSV lines in, CSV lines out
        if self.split_type == "Line":
            output["AssembleWith"] = "Line"
        request = {
            "TransformJobName": job_name,
            "ModelName": model,
            "MaxPayloadInMB": self.max_payload_mb,
            "BatchStrategy": "MultiRecord" if self.split_type != "None" else "SingleRecord",
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
                "ContentType": self.content_type,
                "SplitType": self.split_type,
            },
            "TransformOutput": output,
            "TransformResources": {"InstanceType": self.instance_type, "InstanceCount": self.instance_count},
        }
        announce(connection, "transform", request, f"Transform job {job_name}", show=wait)
        connection.client("sagemaker").create_transform_job(**request)
        job = TransformJob(job_name, connection)
        if wait:
            job.wait(logs=logs)
        return job


class TransformJob(Job):
    """A batch transform job: status, log, cost, and its results (``output``, ``download``)."""

    kind = "Transform"
    _log_group: ClassVar[str] = "/aws/sagemaker/TransformJobs"
    _native: ClassVar[str] = "transform-jobs"

    @property
    def output(self) -> str:
        """The ``s3://`` prefix the results are under (``<input file>.out`` for each input file)."""
        return str(self.describe()["TransformOutput"]["S3OutputPath"])

    def download(self, path: str | Path) -> Path:
        """Every result file, into the folder ``path``."""
        return download_prefix(self.connection, self.output, Path(path))


def download_prefix(connection: Connection, uri: str, target: Path) -> Path:
    """Every object under an ``s3://`` prefix, into ``target`` (keys stay inside it)."""
    bucket, _, prefix = uri[5:].partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    s3 = connection.client("s3")
    target.mkdir(parents=True, exist_ok=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            destination = (target / item["Key"][len(prefix) :]).resolve()
            if not destination.is_relative_to(target.resolve()):
                raise ValidationError(
                    f"Object key {item['Key']!r} would land outside {str(target)!r}",
                    field="Key",
                    value=item["Key"],
                )
            destination.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(destination))
    return target
