"""Amazon Resource Names as Shipyard issues and accepts them."""

from __future__ import annotations

import dataclasses
import re

from shipyard.errors import ValidationError

_ARN_RE = re.compile(
    r"arn:(?P<partition>aws[a-z\-]*):(?P<service>[a-z0-9\-]+):(?P<region>[a-z0-9\-]*):"
    r"(?P<account>\d{12}|):(?P<resource>.+)"
)


@dataclasses.dataclass(frozen=True)
class Arn:
    """A parsed ARN. ``resource_type`` is the part before the first '/' of the resource, if any."""

    partition: str
    service: str
    region: str
    account: str
    resource_type: str
    resource_id: str

    def __str__(self) -> str:
        resource = f"{self.resource_type}/{self.resource_id}" if self.resource_type else self.resource_id
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{resource}"

    @classmethod
    def parse(cls, value: str, *, field: str = "ResourceArn") -> Arn:
        match = _ARN_RE.fullmatch(value)
        if not match:
            raise ValidationError(
                f"{field} {value!r} is not an ARN: expected arn:aws:<service>:<region>:<account>:<resource>",
                field=field,
                value=value,
            )
        resource = match["resource"]
        resource_type, _, resource_id = resource.partition("/")
        if not resource_id:
            resource_type, resource_id = "", resource
        return cls(
            match["partition"],
            match["service"],
            match["region"],
            match["account"],
            resource_type,
            resource_id,
        )


def sagemaker_arn(region: str, account: str, resource_type: str, name: str) -> str:
    """The ARN SageMaker gives a resource; SageMaker lower-cases names in ARNs."""
    return f"arn:aws:sagemaker:{region}:{account}:{resource_type}/{name.lower()}"
