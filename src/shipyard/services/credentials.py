"""Per-job credentials: issued at each launch, found when a request is signed with them, revoked
when their job ends, purged once expired.

The scheduler asks :meth:`CredentialService.for_job` for every attempt it launches (the last
attempt's go first) and :meth:`CredentialService.revoke` when the job reaches a terminal state;
the API's authentication step asks :meth:`CredentialService.lookup`. Model hosts that fetch a
model through the server's S3 API (Ray) get a short-lived read-only credential of their own.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.credentials import (
    SessionCredentials,
    assumed_role_arn,
    job_lifetime,
    job_scope,
    model_scope,
    new_session,
)
from shipyard.core.jobs import Job
from shipyard.core.policy import Policy
from shipyard.store.credentials import CredentialRepository

log = logging.getLogger(__name__)

DEFAULT_MARGIN = dt.timedelta(hours=1)


class CredentialService:
    """Issues, finds and revokes session credentials. Thread-safe (every call is one transaction).

    Args:
        repository: Where credentials are kept.
        account_id: The account in the principals' ARNs.
        clock: What "expired" is measured by.
        margin: Added to a job's MaxRuntimeInSeconds for its credentials' lifetime.
        purge_seconds: How often :meth:`tick` deletes expired credentials.
    """

    def __init__(
        self,
        repository: CredentialRepository,
        *,
        account_id: str,
        clock: Clock = SYSTEM_CLOCK,
        margin: dt.timedelta = DEFAULT_MARGIN,
        purge_seconds: float = 60.0,
    ) -> None:
        self.repository = repository
        self._account = account_id
        self._clock = clock
        self._margin = margin
        self._purge_every = dt.timedelta(seconds=purge_seconds)
        self._next_purge: dt.datetime | None = None

    def now(self) -> dt.datetime:
        return self._clock.now()

    def issue(
        self, owner: str, scope: Policy, lifetime: dt.timedelta, *, principal: str, user: str | None = None
    ) -> SessionCredentials:
        """New credentials for ``owner``, acting as ``principal`` for ``user`` (the user's ARN
        who launched the job), limited by ``scope``."""
        now = self._clock.now()
        credentials = new_session(owner, principal, scope, now + lifetime, user)
        self.repository.add(credentials, now)
        return credentials

    def lookup(self, access_key_id: str) -> SessionCredentials | None:
        """The credentials of ``access_key_id`` (an expired one too, so that the caller can say
        so); None when it is unknown or was revoked."""
        return self.repository.get(access_key_id)

    def revoke(self, owner: str) -> int:
        """End every credential of ``owner`` now; how many there were."""
        count = self.repository.delete_owner(owner)
        if count:
            log.debug("Revoked %d credential(s) of %s", count, owner)
        return count

    def purge(self) -> int:
        """Delete the credentials that have expired."""
        return self.repository.delete_expired(self._clock.now())

    def tick(self) -> bool:
        """A scheduler pass: purge expired credentials every ``purge_seconds``. Never busy."""
        now = self._clock.now()
        if self._next_purge is None or now >= self._next_purge:
            self._next_purge = now + self._purge_every
            self.purge()
        return False

    # -- what the platform issues -------------------------------------------------------------------
    def for_job(self, job: Job[Any]) -> SessionCredentials:
        """Credentials for ``job``'s attempt being launched (an earlier attempt's are revoked):
        its scope (:func:`~shipyard.core.credentials.job_scope`), for its MaxRuntimeInSeconds
        plus the margin, as ``assumed-role/<its role>/<its name>``."""
        self.revoke(job.arn)
        request = job.spec.request
        scope = job_scope(job.kind, request, account=self._account, model=job.run.model)
        role = request.get("RoleArn") or (job.run.model or {}).get("role_arn")  # a transform: its model's
        return self.issue(
            job.arn,
            scope,
            job_lifetime(getattr(job.spec, "max_runtime_seconds", None), self._margin),
            principal=assumed_role_arn(self._account, role if isinstance(role, str) else None, job.name),
            user=job.run.owner,
        )

    def for_model(
        self, owner: str, container: Mapping[str, Any], lifetime: dt.timedelta
    ) -> SessionCredentials:
        """Credentials that read a model's data and code (``container``: its ``model_data_url``
        and ``environment``), for an endpoint instance's host to fetch them."""
        session = owner.rsplit("/", 1)[-1]
        return self.issue(
            owner,
            model_scope(container),
            lifetime,
            principal=assumed_role_arn(self._account, None, session),
        )
