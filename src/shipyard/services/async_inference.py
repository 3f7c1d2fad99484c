"""Asynchronous inference: InvokeEndpointAsync's queue, kept in the store, and its outputs in S3.

:meth:`AsyncInferenceService.submit` checks that the caller may read the request's input, and
keeps the request (an :class:`~shipyard.core.async_inference.AsyncInvocation`, a resource of kind
``async-invocation``: it outlives a server restart). The runtime's dispatcher
(``api/_async_invocations.py``) loads :meth:`queued` at its start (then learns of each request
as it is queued), asks :meth:`capacity`, takes requests with
:meth:`begin`, reads their input (:meth:`read_input`), sends them to a model server of the
endpoint through the router as InvokeEndpoint does, and ends each with :meth:`succeed` or
:meth:`fail`, which write the answer or the failure object as the endpoint's owner would (with
the owner's permissions and buckets: an endpoint cannot write where its owner may not), log the
notification SageMaker would publish to SNS, and forget the request. At a start,
:meth:`recover` fails the requests a stopped server was processing; queued ones go on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.core import async_inference as core
from shipyard.core.async_inference import AsyncInvocation, InvocationState, check_input_size
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.credentials import Principal
from shipyard.core.hosting import EndpointStatus
from shipyard.core.training import parse_s3_uri
from shipyard.errors import AccessDenied, NotFoundError, ShipyardError, ValidationError
from shipyard.services.endpoints import EndpointConfigService, EndpointService
from shipyard.services.identity import IdentityService
from shipyard.storage import ObjectStore
from shipyard.store import Resource, ResourceRepository

log = logging.getLogger(__name__)

KIND = "async-invocation"
NOTIFICATIONS_STREAM = "AsyncInference/i-notifications"  # in /aws/sagemaker/Endpoints/<endpoint>


class EndpointGone(ShipyardError):
    """The endpoint of queued requests was deleted, or failed: they will never be processed."""


class AsyncInferenceService:
    def __init__(
        self,
        repository: ResourceRepository,
        endpoints: EndpointService,
        configs: EndpointConfigService,
        objects: ObjectStore,
        identity: IdentityService,
        *,
        endpoints_dir: Path,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.repository = repository
        self._endpoints = endpoints
        self._configs = configs
        self._objects = objects
        self._identity = identity
        self._dir = endpoints_dir
        self._clock = clock
        self._log_lock = threading.Lock()

    # -- InvokeEndpointAsync -----------------------------------------------------------------------
    def submit(
        self, endpoint_name: str, headers: Mapping[str, str], body: bytes, principal: Principal
    ) -> AsyncInvocation:
        """Queue a request (``headers`` with lower-case names). Raises ValidationError for an
        endpoint without AsyncInferenceConfig or a bad header, AccessDenied when ``principal``
        may not read the input."""
        endpoint = self._endpoints.get(endpoint_name)
        config_name = endpoint.state["config"]
        try:
            _, config = self._configs.get(config_name)
        except NotFoundError:
            raise ValidationError(
                f"Endpoint {endpoint_name}'s endpoint config {config_name} was deleted: its "
                "AsyncInferenceConfig is unknown",
                field="EndpointName",
                value=endpoint_name,
            ) from None
        if config.async_inference is None:
            raise ValidationError(
                f"Endpoint {endpoint_name} is not an asynchronous inference endpoint: its endpoint config "
                f"{config_name} has no AsyncInferenceConfig (use InvokeEndpoint)",
                field="EndpointName",
                value=endpoint_name,
            )
        invocation = AsyncInvocation.from_request(
            endpoint_name,
            config.async_inference,
            headers,
            body,
            received=self._clock.now(),
            owner=endpoint.state.get("owner"),
        )
        if invocation.input_location is not None:
            self._check_read(principal, invocation.input_location)
        self.repository.create(
            Resource(
                KIND,
                invocation.key,
                endpoint.arn,
                invocation.received,
                {},
                state=invocation.to_record(),
                status=invocation.state.value,
            )
        )
        return invocation

    def _check_read(self, principal: Principal, uri: str) -> None:
        bucket, key = parse_s3_uri(uri, field="InputLocation")
        resource = f"arn:aws:s3:::{bucket}/{key}"
        decision = principal.decide("s3:GetObject", resource)
        if not decision.allowed:
            raise AccessDenied(
                principal.arn,
                "s3:GetObject",
                resource,
                "no identity-based policy allows the s3:GetObject action on the InputLocation",
            )
        bucket_arn = f"arn:aws:s3:::{bucket}"
        if not self._identity.reachable(principal, [bucket_arn])[bucket_arn]:
            raise AccessDenied(
                principal.arn,
                "s3:GetObject",
                resource,
                "no resource-based policy allows the s3:GetObject action (the bucket is another user's)",
            )

    # -- the dispatcher's ----------------------------------------------------------------------------
    def now(self) -> dt.datetime:
        return self._clock.now()

    def queued(self) -> dict[str, list[AsyncInvocation]]:
        """The queued requests, by endpoint, oldest first."""
        found: dict[str, list[AsyncInvocation]] = {}
        for resource in self.repository.find(
            status=InvocationState.QUEUED.value, sort_by="CreationTime", ascending=True, limit=1_000_000
        ):
            invocation = _load(resource)
            found.setdefault(invocation.endpoint, []).append(invocation)
        return found

    def capacity(self, endpoint_name: str) -> int:
        """How many requests the endpoint processes at once now: its config's
        MaxConcurrentInvocationsPerInstance times its serving model servers (0 while it is not
        serving). Raises EndpointGone for a deleted or failed endpoint."""
        try:
            endpoint = self._endpoints.get(endpoint_name)
        except NotFoundError:
            raise EndpointGone(
                f"Endpoint {endpoint_name} was deleted before the request was processed"
            ) from None
        if endpoint.status in (EndpointStatus.FAILED.value, EndpointStatus.DELETING.value):
            reason = endpoint.state.get("failure_reason") or ""
            raise EndpointGone(
                f"Endpoint {endpoint_name} is {endpoint.status}" + (f": {reason}" if reason else "")
            )
        per_instance = core.DEFAULT_CONCURRENCY
        try:
            spec = self._configs.get(endpoint.state["config"])[1]
        except NotFoundError:  # the config deleted under a serving endpoint: SageMaker allows it
            spec = None
        if spec is not None and spec.async_inference is not None:
            per_instance = spec.async_inference.max_concurrency_per_instance
        serving = sum(1 for s in self._endpoints.router.servers(endpoint_name) if s.alive)
        return core.capacity(per_instance, serving)

    def begin(self, invocation: AsyncInvocation) -> None:
        """The request goes to a model server now (recorded: a restart will not send it twice)."""

        def running(resource: Resource) -> Resource:
            return Resource(
                resource.kind,
                resource.name,
                resource.arn,
                resource.created,
                resource.request,
                resource.state,
                InvocationState.RUNNING.value,
                self._clock.now(),
            )

        self.repository.modify(invocation.key, running)

    def read_input(self, invocation: AsyncInvocation) -> bytes:
        """The request's payload: its inline body (from the store when ``invocation`` was given
        without it), or the InputLocation object (read by the platform: the caller's permission was
        checked when it was queued). Raises NotFoundError when the object is not there."""
        if invocation.input_location is None:
            if invocation.body is not None:
                return invocation.body
            return _load(self.repository.get(invocation.key)).body or b""  # kept in the store only
        bucket, key = parse_s3_uri(invocation.input_location, field="InputLocation")
        check_input_size(self._objects.head_object(bucket, key).size, invocation.input_location)
        return self._objects.get_object_bytes(bucket, key)  # whole: bounded by the check

    def succeed(self, invocation: AsyncInvocation, content_type: str | None, body: bytes) -> None:
        """Write the model's answer to the output location as the endpoint's owner would."""
        refusal = self._write_refusal(invocation.owner, invocation.output_location)
        if refusal is not None:
            self.fail(invocation, "AccessDenied", refusal)
            return
        bucket, key = parse_s3_uri(invocation.output_location, field="S3OutputPath")
        try:
            self._objects.put_object(
                bucket, key, body, content_type=content_type or "application/octet-stream"
            )
        except (NotFoundError, ValidationError) as exc:
            self.fail(
                invocation,
                "OutputNotWritten",
                f"The answer could not be written to {invocation.output_location}: {exc}",
            )
            return
        self._notify(invocation, succeeded=True, content_type=content_type, response=body)
        self._forget(invocation)

    def fail(
        self,
        invocation: AsyncInvocation,
        code: str,
        message: str,
        *,
        status: int | None = None,
        response: bytes | None = None,
    ) -> None:
        """Write the failure object (when the config has S3FailurePath and the owner may write
        there; else a line in the endpoint's log), notify, and forget the request."""
        where = invocation.failure_location
        if where is None:  # nowhere in S3 for it: the endpoint's log says it
            self._log_line(
                invocation.endpoint,
                f"{invocation.inference_id}: failed ({code}): {message} (the endpoint config has no "
                "S3FailurePath to write it to)",
            )
        else:
            refusal = self._write_refusal(invocation.owner, where)
            if refusal is not None:
                log.warning("Asynchronous inference %s: %s; %s", invocation.inference_id, message, refusal)
                self._log_line(
                    invocation.endpoint, f"{invocation.inference_id}: failure not written: {refusal}"
                )
            else:
                bucket, key = parse_s3_uri(where, field="S3FailurePath")
                document = core.failure_document(invocation, code, message, status)
                try:
                    self._objects.put_object(bucket, key, document, content_type="application/json")
                except (NotFoundError, ValidationError) as exc:
                    self._log_line(
                        invocation.endpoint,
                        f"{invocation.inference_id}: failure not written to {where}: {exc}",
                    )
        self._notify(invocation, succeeded=False, failure=message, response=response)
        self._forget(invocation)

    def recover(self) -> list[AsyncInvocation]:
        """At a server start: fail the requests that were at a model server when the server
        stopped (they are not sent twice); the queued ones are resumed. Returns the failed."""
        everything = [_load(r) for r in self.repository.find(limit=1_000_000)]
        _, lost = core.after_restart(everything)
        for invocation in lost:
            self.fail(
                invocation,
                "ServerRestarted",
                "The Shipyard server stopped while a model server was processing this request; "
                "it was not retried. Invoke the endpoint again.",
            )
        return lost

    # -- writing as the owner ------------------------------------------------------------------------
    def _write_refusal(self, owner: str | None, uri: str) -> str | None:
        """Why the endpoint's owner may not write ``uri`` (None: it may; the lab's endpoints,
        owned by no user, write anywhere as root does)."""
        if owner is None:
            return None
        principal = self._identity.principal_of(owner)
        if principal is None:
            return f"the endpoint's owner {owner} no longer exists or is disabled"
        bucket, key = parse_s3_uri(uri, field="S3OutputPath")
        resource = f"arn:aws:s3:::{bucket}/{key}"
        if not principal.decide("s3:PutObject", resource).allowed:
            return str(
                AccessDenied(
                    owner, "s3:PutObject", resource, "no identity-based policy allows the s3:PutObject action"
                )
            )
        bucket_arn = f"arn:aws:s3:::{bucket}"
        if not self._identity.reachable(principal, [bucket_arn])[bucket_arn]:
            return str(
                AccessDenied(
                    owner,
                    "s3:PutObject",
                    resource,
                    "no resource-based policy allows the s3:PutObject action (the bucket is another user's)",
                )
            )
        return None

    def _notify(
        self,
        invocation: AsyncInvocation,
        *,
        succeeded: bool,
        content_type: str | None = None,
        response: bytes | None = None,
        failure: str | None = None,
    ) -> None:
        try:
            region = self._endpoints.get(invocation.endpoint).arn.split(":")[3]
        except NotFoundError:
            return  # no endpoint, no log group
        message = core.notification(
            invocation,
            region=region,
            now=self._clock.now(),
            succeeded=succeeded,
            content_type=content_type,
            response=response,
            failure=failure,
        )
        if message is not None:
            self._log_line(invocation.endpoint, json.dumps(message))

    def _log_line(self, endpoint: str, line: str) -> None:
        """A line in the endpoint's log group, stream ``AsyncInference/i-notifications``."""
        folder = self._dir / endpoint
        if not folder.is_dir():
            return  # deleted meanwhile
        path = folder / NOTIFICATIONS_STREAM / "log.jsonl"
        record = json.dumps({"t": int(self._clock.now().timestamp() * 1000), "m": line})
        with self._log_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(record + "\n")

    def _forget(self, invocation: AsyncInvocation) -> None:
        with contextlib.suppress(NotFoundError):
            self.repository.delete(invocation.key)


def _load(resource: Resource) -> AsyncInvocation:
    state: dict[str, Any] = dict(resource.state)
    return AsyncInvocation.from_record(resource.name, resource.status, state)


__all__ = ["KIND", "NOTIFICATIONS_STREAM", "AsyncInferenceService", "EndpointGone"]
