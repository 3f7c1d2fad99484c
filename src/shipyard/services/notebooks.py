"""Notebook instances: the SageMaker calls, and one loop that brings Jupyter servers to the records.

The calls change the record (through :func:`shipyard.core.notebooks.transition`) and wake the
loop; the loop (:meth:`NotebookService.tick`, at once when woken, else every second) does the
work: starts a ``Pending`` notebook's Jupyter server (``Failed`` with how to install JupyterLab
when it is not installed) and marks it ``InService`` once ``/api/status`` answers, stops a
``Stopping`` one and marks it ``Stopped``, finishes a ``Deleting`` one, fails one whose server
ended by itself, and stops one idle for ``idle_seconds`` (Jupyter's own ``last_activity``). Each
run in service is an interval in the cost ledger at the catalog's notebook price. A notebook
reaches this server's S3 and SageMaker APIs with its own session credentials, for its role,
fetched and renewed by the AWS SDKs' container credential provider from
``/notebooks/<name>/credentials`` (:meth:`NotebookService.container_credentials`) with a token
made for the run; the server's key never enters the notebook.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hmac
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shipyard.compute.local._notebooks import JupyterServer, JupyterServers, NotebookLaunch, last_activity
from shipyard.core import notebooks as rules
from shipyard.core.arn import sagemaker_arn
from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.credentials import SessionCredentials, assumed_role_arn
from shipyard.core.notebooks import NotebookAction, NotebookInstance, NotebookStatus
from shipyard.core.pagination import Page
from shipyard.core.policy import ADMINISTRATOR
from shipyard.errors import AuthenticationError, ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.services.costs import CostService
from shipyard.services.credentials import CredentialService
from shipyard.store.notebooks import NotebookRepository

log = logging.getLogger(__name__)
CREDENTIAL_SECONDS = 3600  # a notebook's session credentials last an hour; the SDKs renew them
RENEW_SECONDS = 900  # a fetch within 15 minutes of their end gets new ones
LEDGER_SEEN_SECONDS = 60


@dataclasses.dataclass
class _Run:
    """A notebook's Jupyter server while it runs (in memory: a run ends with the server)."""

    server: JupyterServer
    credentials_token: str
    started: float
    ledger_key: str
    credentials: SessionCredentials | None = None
    next_status: float = 0.0
    activity: dt.datetime | None = None


class NotebookService:
    """Notebook instances. Thread-safe: calls change records in transactions; one loop thread
    starts and stops servers.

    Args:
        endpoint_url: This server's address as a notebook reaches it (loopback).
        idle_seconds: A notebook in service with no activity for this long is stopped (0: never).
        startup_seconds: A Jupyter server not answering within this long fails its notebook.
    """

    def __init__(
        self,
        repository: NotebookRepository,
        servers: JupyterServers,
        costs: CostService,
        credentials: CredentialService,
        catalog: InstanceCatalog,
        *,
        notebooks_dir: Path,
        account_id: str,
        endpoint_url: str,
        idle_seconds: int = 3600,
        startup_seconds: float = 120.0,
        claims: Claims = NO_CLAIMS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.repository = repository
        self._servers = servers
        self._costs = costs
        self._credentials = credentials
        self._catalog = catalog
        self._dir = notebooks_dir
        self._account = account_id
        self._url = endpoint_url.rstrip("/")
        self.idle_seconds = idle_seconds
        self._startup = startup_seconds
        self._claims = claims
        self._clock = clock
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_seen = 0.0

    # -- the SageMaker calls ----------------------------------------------------------------------
    def offered(self) -> dict[str, bool]:
        return {t.name: t.supports(JobKind.NOTEBOOK) for t in self._catalog}

    def create(self, params: Mapping[str, Any], *, region: str, owner: str | None = None) -> NotebookInstance:
        rules.check_request(params, self.offered())
        now = self._clock.now()
        name = params["NotebookInstanceName"]
        request = {k: v for k, v in params.items() if k != "Tags"}
        request.setdefault("VolumeSizeInGB", 5)
        notebook = NotebookInstance(
            name=name,
            arn=sagemaker_arn(region, self._account, "notebook-instance", name),
            region=region,
            status=NotebookStatus.PENDING,
            request=request,
            created=now,
            last_modified=now,
            owner=owner,
        )
        self.repository.create(notebook)
        self._claims.claim_for(notebook.arn, owner)
        self._wake.set()
        return notebook

    def get(self, name: str) -> NotebookInstance:
        return self.repository.get(name)

    def find(self, params: Mapping[str, Any]) -> tuple[list[NotebookInstance], str | None]:
        """ListNotebookInstances: filtered and sorted as asked, one page."""
        found = self.repository.all()
        contains = (params.get("NameContains") or "").lower()
        status = params.get("StatusEquals")
        bounds = {
            "CreationTimeAfter": lambda n, t: n.created > t,
            "CreationTimeBefore": lambda n, t: n.created < t,
            "LastModifiedTimeAfter": lambda n, t: n.last_modified > t,
            "LastModifiedTimeBefore": lambda n, t: n.last_modified < t,
        }
        found = [
            n
            for n in found
            if contains in n.name.lower()
            and (status is None or n.status.value == status)
            and all(test(n, _aware(params[key])) for key, test in bounds.items() if params.get(key))
        ]
        sort = params.get("SortBy") or "Name"
        keys = {
            "Name": lambda n: n.name,
            "CreationTime": lambda n: n.created,
            "Status": lambda n: n.status.value,
        }
        found.sort(key=keys[sort], reverse=(params.get("SortOrder") or "Ascending") == "Descending")
        return Page.requested(params, default_size=10).slice(found)

    def start_instance(self, name: str) -> None:
        self._act(name, NotebookAction.START)

    def stop_instance(self, name: str) -> None:
        self._act(name, NotebookAction.STOP)

    def delete(self, name: str) -> None:
        self._act(name, NotebookAction.DELETE)

    def update(self, params: Mapping[str, Any]) -> NotebookInstance:
        """UpdateNotebookInstance of a stopped (or failed) notebook: its InstanceType,
        VolumeSizeInGB, RoleArn and the other members it records, at once."""
        rules.check_request(params, self.offered())
        now = self._clock.now()
        changes = {
            k: v
            for k, v in params.items()
            if k not in ("NotebookInstanceName",) and not k.startswith("Disassociate")
        }

        def apply(notebook: NotebookInstance) -> NotebookInstance:
            rules.transition(notebook.status, NotebookAction.UPDATE, notebook.arn)
            request = {**notebook.request, **changes}
            return dataclasses.replace(notebook, request=request, last_modified=now)

        return self.repository.modify(params["NotebookInstanceName"], apply)

    def presigned_url(self, name: str, session_seconds: Any = None) -> str:
        """CreatePresignedNotebookInstanceUrl: a link to the notebook's JupyterLab, good for 5
        minutes, opening a session of ``session_seconds`` (SageMaker's default 12 hours)."""
        seconds = rules.session_seconds(session_seconds)
        notebook = self.repository.get(name)
        run = self._runs.get(name)
        if notebook.status != NotebookStatus.IN_SERVICE or run is None:
            raise ValidationError(
                f"Notebook Instance {notebook.arn} is not in service (status {notebook.status.value}): "
                "start it and wait until it is InService",
                field="NotebookInstanceName",
                value=name,
            )
        now = int(time.time())
        token = rules.link_token(run.server.key, now + rules.URL_SECONDS, now + seconds)
        return f"{run.server.url}/lab?shipyard_token={quote(token)}"

    def _act(self, name: str, action: NotebookAction) -> None:
        now = self._clock.now()

        def apply(notebook: NotebookInstance) -> NotebookInstance:
            status = rules.transition(notebook.status, action, notebook.arn)
            return notebook.with_status(
                status, now, url=notebook.url if action != NotebookAction.START else None
            )

        self.repository.modify(name, apply)
        self._wake.set()

    # -- the container credential provider ------------------------------------------------------
    def container_credentials(self, name: str, authorization: str) -> SessionCredentials:
        """The notebook's current session credentials, for the run whose token ``authorization``
        is (AuthenticationError otherwise); new ones when they end within 15 minutes."""
        with self._lock:
            run = self._runs.get(name)
            if run is None or not hmac.compare_digest(authorization.encode(), run.credentials_token.encode()):
                raise AuthenticationError(f"No notebook instance {name!r} is running with that token")
            current = run.credentials
            now = self._credentials.now()
            if current is None or (current.expiration - now).total_seconds() < RENEW_SECONDS:
                notebook = self.repository.get(name)
                current = run.credentials = self._credentials.issue(
                    notebook.arn,
                    ADMINISTRATOR,  # the role's policies decide, as for a SageMaker notebook
                    dt.timedelta(seconds=CREDENTIAL_SECONDS),
                    principal=assumed_role_arn(self._account, notebook.role_arn, notebook.name),
                    user=notebook.owner,
                )
            return current

    # -- the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Bring the records to what a new server has (:func:`rules.recovered`), then loop."""
        self._costs.usage.close_abandoned("notebook")  # a server that died left them open
        now = self._clock.now()
        for notebook in self.repository.all():
            status = rules.recovered(notebook.status)
            if status != notebook.status:
                self.repository.modify(notebook.name, _recovered_to(status, now))
        self._thread = threading.Thread(target=self._loop, name="shipyard-notebooks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for name in list(self._runs):
            with contextlib.suppress(Exception):
                self._end_run(name, self.repository.get(name).arn)
        self._servers.close()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.tick()
            except Exception:
                log.exception("Notebook pass failed")
            # A starting server is looked at often, a running one each second (has it ended? is it
            # idle?); with none running, each change wakes the loop and the poll is a safety net.
            self._wake.wait(0.1 if busy else 1.0 if self._runs else 5.0)
            self._wake.clear()

    def tick(self) -> bool:
        """One pass over every notebook (see the module docstring); whether one is starting."""
        starting = False
        for notebook in self.repository.all():
            if self._stop.is_set():
                return False
            starting = starting or notebook.status == NotebookStatus.PENDING
            try:
                self._step(notebook)
            except Exception as exc:
                log.exception("Notebook instance %s: %s", notebook.name, exc)
        if time.monotonic() >= self._next_seen:
            self._next_seen = time.monotonic() + LEDGER_SEEN_SECONDS
            self._costs.usage.seen([r.ledger_key for r in list(self._runs.values())], self._clock.now())
        return starting

    def _step(self, notebook: NotebookInstance) -> None:
        name = notebook.name
        run = self._runs.get(name)
        status = notebook.status
        if status == NotebookStatus.PENDING:
            if run is None:
                self._launch(notebook)
            elif not run.server.alive:
                self._fail(notebook, f"The Jupyter server exited while starting: {run.server.log_tail()}")
            elif run.server.status(self._api_token(run)) is not None:
                self._in_service(notebook, run)
            elif time.monotonic() - run.started > self._startup:
                self._fail(
                    notebook,
                    f"The Jupyter server did not answer within {self._startup:.0f} s: {run.server.log_tail()}",
                )
        elif status == NotebookStatus.IN_SERVICE:
            if run is None or not run.server.alive:
                tail = run.server.log_tail() if run else ""
                self._fail(notebook, f"The Jupyter server ended: {tail}".rstrip(": "))
            elif time.monotonic() >= run.next_status:
                run.next_status = time.monotonic() + max(1.0, min(30.0, self.idle_seconds / 4))
                answer = run.server.status(self._api_token(run))
                if answer is not None:
                    run.activity = last_activity(answer)
                since = notebook.in_service_since or notebook.last_modified
                if rules.is_idle(run.activity, self._clock.now(), self.idle_seconds, since=since):
                    log.info("Notebook instance %s idle for %d s: stopping it", name, self.idle_seconds)
                    with contextlib.suppress(ValidationError):
                        self._act(name, NotebookAction.STOP)
        elif status == NotebookStatus.STOPPING:
            self._end_run(name, notebook.arn)
            self.repository.modify(name, lambda n: n.with_status(NotebookStatus.STOPPED, self._clock.now()))
        elif status == NotebookStatus.DELETING:
            self._end_run(name, notebook.arn)
            shutil.rmtree(self._dir / name, ignore_errors=True)
            self.repository.delete(name)
            self._claims.forget(notebook.arn)
        elif status in (NotebookStatus.STOPPED, NotebookStatus.FAILED) and run is not None:
            self._end_run(name, notebook.arn)

    def _launch(self, notebook: NotebookInstance) -> None:
        token = secrets.token_urlsafe(32)
        launch = NotebookLaunch(
            name=notebook.name,
            folder=self._dir / notebook.name,
            environment={
                "AWS_ENDPOINT_URL": self._url,
                "AWS_DEFAULT_REGION": notebook.region,
                "AWS_REGION": notebook.region,
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{self._url}/notebooks/{quote(notebook.name)}/credentials",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
                "SAGEMAKER_NOTEBOOK_INSTANCE_NAME": notebook.name,
            },
            metadata={"ResourceArn": notebook.arn, "ResourceName": notebook.name},
        )
        try:
            server = self._servers.start(launch)
        except (RuntimeError, OSError) as exc:
            self._fail(notebook, str(exc))
            return
        key = f"notebook/{notebook.name}/{self._clock.now().strftime('%Y%m%dT%H%M%S.%f')}"
        with self._lock:
            self._runs[notebook.name] = _Run(server, token, time.monotonic(), key)
        self.repository.modify(notebook.name, lambda n: dataclasses.replace(n, url=server.url))

    def _in_service(self, notebook: NotebookInstance, run: _Run) -> None:
        now = self._clock.now()
        self.repository.modify(
            notebook.name,
            lambda n: n.with_status(NotebookStatus.IN_SERVICE, now, in_service_since=now, url=run.server.url),
        )
        self._costs.instances_started(
            run.ledger_key,
            kind="notebook",
            name=notebook.name,
            arn=notebook.arn,
            instance_type=notebook.instance_type,
            count=1,
            work=JobKind.NOTEBOOK,
            at=now,
            owner=notebook.owner,
        )
        log.info("Notebook instance %s is in service at %s", notebook.name, run.server.url)

    def _fail(self, notebook: NotebookInstance, reason: str) -> None:
        self._end_run(notebook.name, notebook.arn)
        now = self._clock.now()
        self.repository.modify(
            notebook.name, lambda n: n.with_status(NotebookStatus.FAILED, now, failure_reason=reason[:1024])
        )

    def _end_run(self, name: str, arn: str) -> None:
        """Stop the notebook's server (if it runs), close its ledger interval, end its credentials."""
        with self._lock:
            run = self._runs.pop(name, None)
        if run is None:
            return
        self._servers.stop(run.server)
        self._costs.usage.close(run.ledger_key, self._clock.now())
        self._credentials.revoke(arn)

    def _api_token(self, run: _Run) -> str:
        return rules.session_token(run.server.key, int(time.time()) + 60)

    def running(self, name: str) -> JupyterServer | None:
        """The notebook's Jupyter server while it runs (for tests and the console's details)."""
        run = self._runs.get(name)
        return run.server if run else None


def _recovered_to(status: NotebookStatus, at: dt.datetime) -> Callable[[NotebookInstance], NotebookInstance]:
    def change(notebook: NotebookInstance) -> NotebookInstance:
        return notebook.with_status(status, at, failure_reason=notebook.failure_reason)

    return change


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


__all__ = ["NotebookService"]
