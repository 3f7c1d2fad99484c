"""What the fuzz tests share: counting requests and 5xx answers per protocol, in a file per test
process, which the tier's terminal summary adds up."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

COUNTS_DIR_ENV = "SHIPYARD_FUZZ_COUNTS_DIR"

_requests: Counter[str] = Counter()
_server_errors: Counter[str] = Counter()
_not_implemented: Counter[str] = Counter()


def record(protocol: str, status: int, *, not_implemented: bool = False) -> None:
    """Count one answer (a fuzz test calls :func:`flush` when it ends, passed or failed);
    ``not_implemented``: S3's 501 for a feature Shipyard does not have."""
    _requests[protocol] += 1
    if status >= 500:
        _server_errors[protocol] += 1
    if not_implemented:
        _not_implemented[protocol] += 1


def flush() -> None:
    """Write this process's counts where the terminal summary finds them."""
    folder = os.environ.get(COUNTS_DIR_ENV)
    if not folder:
        return
    counts = {
        p: {"requests": n, "5xx": _server_errors[p], "501": _not_implemented[p]} for p, n in _requests.items()
    }
    (Path(folder) / f"{os.getpid()}.json").write_text(json.dumps(counts))
