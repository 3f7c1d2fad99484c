"""What every protocol handler knows about the request it serves."""

from __future__ import annotations

import dataclasses

from shipyard.services import Platform


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """The platform, and who asked from where.

    ``region`` is the one the client signed for (its credential scope), else the server default;
    ARNs created by the request use it. ``principal`` is the access key id the client signed with.
    """

    platform: Platform
    request_id: str
    region: str
    principal: str | None

    @property
    def account_id(self) -> str:
        return self.platform.settings.account_id
