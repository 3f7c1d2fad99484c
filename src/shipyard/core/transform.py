"""Batch transform jobs: what a CreateTransformJob request says, and the record filters it names.

A transform job runs the model's server beside an agent that streams each input object, splits it
into records, batches them, sends the batches to the server (several at once) and writes the
answers, in order, to ``<input>.out`` under the output path.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from shipyard.core.training import MetricDefinition, parse_s3_uri
from shipyard.errors import ValidationError


def _unsupported(field: str, what: str) -> ValidationError:
    return ValidationError(f"{field} ({what}) is not supported by Shipyard yet", field=field)


@dataclasses.dataclass(frozen=True)
class TransformJobSpec:
    kind: ClassVar[str] = "transform"
    name: str
    model_name: str
    instance_type: str
    instance_count: int
    s3_uri: str
    data_type: str  # S3Prefix | ManifestFile
    content_type: str | None
    compression: str  # None | Gzip
    split_type: str  # None | Line
    batch_strategy: str  # SingleRecord | MultiRecord
    max_payload_bytes: int
    max_concurrent: int
    output_path: str
    accept: str | None
    assemble_with: str  # None | Line
    input_filter: str
    output_filter: str
    join_source: str  # None | Input
    timeout_seconds: int
    max_retries: int
    environment: Mapping[str, str]
    request: Mapping[str, Any]
    image: str | None = None  # the model's, once known
    max_runtime_seconds: int = 7 * 24 * 3600
    max_retry_attempts: int = 0
    metric_definitions: tuple[MetricDefinition, ...] = ()

    @classmethod
    def from_request(cls, params: Mapping[str, Any]) -> TransformJobSpec:
        source = params["TransformInput"]["DataSource"]["S3DataSource"]
        inputs = params["TransformInput"]
        output = params["TransformOutput"]
        processing = params.get("DataProcessing") or {}
        client = params.get("ModelClientConfig") or {}
        split = inputs.get("SplitType", "None")
        if split not in ("None", "Line"):
            raise _unsupported("TransformInput.SplitType", f"{split} records; use Line or None")
        if source.get("S3DataType", "S3Prefix") not in ("S3Prefix", "ManifestFile"):
            raise _unsupported("TransformInput.DataSource.S3DataSource.S3DataType", source["S3DataType"])
        parse_s3_uri(source["S3Uri"], field="TransformInput.DataSource.S3DataSource.S3Uri")
        parse_s3_uri(output["S3OutputPath"], field="TransformOutput.S3OutputPath")
        for field in ("InputFilter", "OutputFilter"):
            JsonPathFilter.parse(processing.get(field, "$"), field=f"DataProcessing.{field}")
        payload = int(params.get("MaxPayloadInMB", 6))
        if payload < 0 or payload > 100:
            raise ValidationError(
                f"MaxPayloadInMB must be between 0 and 100, got {payload}",
                field="MaxPayloadInMB",
                value=payload,
            )
        resources = params["TransformResources"]
        return cls(
            name=params["TransformJobName"],
            model_name=params["ModelName"],
            instance_type=resources["InstanceType"],
            instance_count=int(resources.get("InstanceCount", 1)),
            s3_uri=source["S3Uri"],
            data_type=source.get("S3DataType", "S3Prefix"),
            content_type=inputs.get("ContentType"),
            compression=inputs.get("CompressionType", "None"),
            split_type=split,
            batch_strategy=params.get("BatchStrategy", "MultiRecord" if split == "Line" else "SingleRecord"),
            max_payload_bytes=(payload or 100) * 1024 * 1024,  # 0: no limit, as far as 100 MB goes
            max_concurrent=max(1, int(params.get("MaxConcurrentTransforms") or 1)),
            output_path=output["S3OutputPath"],
            accept=output.get("Accept"),
            assemble_with=output.get("AssembleWith", "None"),
            input_filter=processing.get("InputFilter", "$"),
            output_filter=processing.get("OutputFilter", "$"),
            join_source=processing.get("JoinSource", "None"),
            timeout_seconds=int(client.get("InvocationsTimeoutInSeconds", 600)),
            max_retries=int(client.get("InvocationsMaxRetries", 3)),
            environment=dict(params.get("Environment") or {}),
            request=params,
        )

    @property
    def filters_records(self) -> bool:
        """Whether records must be taken apart (filters or a join), not passed through as they are."""
        return self.input_filter != "$" or self.output_filter != "$" or self.join_source == "Input"

    def model_servers(self, cpus: float) -> int:
        """How many model server workers an instance granted ``cpus`` runs: one per whole core, as
        SageMaker's framework containers run a worker per vCPU, but never more than requests are
        in flight (MaxConcurrentTransforms), since a worker without a request does nothing."""
        return max(1, min(self.max_concurrent, int(cpus)))


_INDEX = re.compile(r"^-?\d+$|^(-?\d*):(-?\d*)$")


@dataclasses.dataclass(frozen=True)
class JsonPathFilter:
    """The JSONPath subset SageMaker documents for DataProcessing: ``$``, ``$[1:]``, ``$[0,5:]``,
    ``$.features``, ``$['id','SageMakerOutput']``. CSV records are arrays of their fields."""

    path: str
    keys: tuple[str, ...] = ()  # $.name / $['a','b']
    indices: tuple[tuple[int | None, int | None, bool], ...] = ()  # (start, stop, is_slice)

    @classmethod
    def parse(cls, path: str, *, field: str = "DataProcessing") -> JsonPathFilter:
        text = path.strip()
        if text == "$":
            return cls(text)
        if text.startswith("$.") and re.fullmatch(r"\$\.[A-Za-z_][\w-]*", text):
            return cls(text, keys=(text[2:],))
        match = re.fullmatch(r"\$\[(.+)\]", text)
        if match:
            parts = [p.strip() for p in match.group(1).split(",")]
            if all(re.fullmatch(r"'[^']*'|\"[^\"]*\"", p) for p in parts):
                return cls(text, keys=tuple(p[1:-1] for p in parts))
            indices: list[tuple[int | None, int | None, bool]] = []
            for part in parts:
                found = _INDEX.match(part)
                if not found:
                    break
                if ":" in part:
                    start, stop = found.group(1), found.group(2)
                    indices.append((int(start) if start else None, int(stop) if stop else None, True))
                else:
                    indices.append((int(part), None, False))
            else:
                return cls(text, indices=tuple(indices))
        raise ValidationError(
            f"{field} {path!r} is not a JSONPath Shipyard applies: use $, $[1:], $[0,5:], $.name or $['a','b']",
            field=field,
            value=path,
        )

    def apply(self, value: Any) -> Any:
        if self.path == "$":
            return value
        if self.keys:
            if not isinstance(value, dict):
                raise ValueError(f"{self.path} selects keys, but the record is not a JSON object")
            if len(self.keys) == 1 and self.path.startswith("$."):
                return value[self.keys[0]]
            return {k: value[k] for k in self.keys if k in value}
        if not isinstance(value, list):
            raise ValueError(f"{self.path} selects positions, but the record is not an array")
        selected: list[Any] = []
        for start, stop, is_slice in self.indices:
            selected += value[start:stop] if is_slice else [value[start]]  # type: ignore[index]
        return selected


def parse_record(record: bytes, content_type: str | None) -> Any:
    """A record as JSONPath sees it: JSON as JSON, anything else as a CSV row."""
    text = record.decode("utf-8")
    if content_type and "json" in content_type:
        return json.loads(text)
    return next(csv.reader([text]), [])


def format_record(value: Any, content_type: str | None) -> bytes:
    if content_type and "json" in content_type:
        return json.dumps(value).encode()
    if isinstance(value, list):
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(value)
        return out.getvalue().encode()
    return str(value).encode()


def join_output(record: Any, output: bytes, content_type: str | None) -> Any:
    """JoinSource Input: the output appended to its input record (JSON: under SageMakerOutput)."""
    answer = output.decode("utf-8").strip()
    if isinstance(record, dict):
        try:
            parsed = json.loads(answer)
        except ValueError:
            parsed = answer
        return {**record, "SageMakerOutput": parsed}
    if isinstance(record, list):
        return [*record, *next(csv.reader([answer]), [])]
    return [record, answer]
