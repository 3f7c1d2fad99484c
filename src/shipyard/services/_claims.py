"""Who owns what a service creates: the port through which services record it.

Each service that creates a resource records its creator once the resource exists, before any
tag can share it (a share tag needs the record), and forgets the record when it deletes the
resource. :class:`~shipyard.services.identity.IdentityService` is the platform's implementation;
services made without one (unit tests) record nothing.
"""

from __future__ import annotations

from typing import Protocol


class Claims(Protocol):
    def claim_for(self, resource_arn: str, owner: str | None) -> None:
        """Record ``owner`` (a user's ARN; None: the lab's) as the resource's creator."""
        ...

    def forget(self, resource_arn: str) -> None:
        """Forget the record of a deleted resource."""
        ...


class _NoClaims:
    def claim_for(self, resource_arn: str, owner: str | None) -> None:
        pass

    def forget(self, resource_arn: str) -> None:
        pass


NO_CLAIMS: Claims = _NoClaims()
