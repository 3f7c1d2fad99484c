"""What every protocol handler knows about the request it serves."""

from __future__ import annotations

import dataclasses

from shipyard.core.credentials import Principal
from shipyard.services import Platform


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """The platform, and who asked from where.

    ``region`` is the one the client signed for (its credential scope), else the server default;
    ARNs created by the request use it. ``access_key_id`` is the key the client signed with (None:
    unsigned); ``caller`` who the request acts as (authenticated, and allowed this request).
    """

    platform: Platform
    request_id: str
    region: str
    access_key_id: str | None
    caller: Principal

    @property
    def account_id(self) -> str:
        return self.platform.settings.account_id

    @property
    def owner(self) -> str | None:
        """Who owns what this request creates: the user's ARN (a job's session: the user who
        launched the job); None for root, whose resources are the lab's."""
        return self.caller.user
