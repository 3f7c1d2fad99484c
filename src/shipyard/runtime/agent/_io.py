"""What an agent writes for the server (its log and status), and how it reaches the object store."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.runtime.contract import AgentStatus, InstanceFolder, Phase, StoreAccess
from shipyard.storage import LocalObjectStore, ObjectStore

FAILURE_LIMIT = 1024  # characters of a failure reason, as SageMaker keeps


class JobInputError(Exception):
    """Something about the job's inputs or code, reported as the job's ClientError."""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class LogWriter:
    """Appends timestamped lines to ``log.jsonl``; thread-safe."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        record = json.dumps({"t": int(time.time() * 1000), "m": text.rstrip("\n")}, ensure_ascii=False)
        with self._lock:
            self._file.write(record + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class StatusFile:
    """The agent's :class:`AgentStatus`, rewritten atomically on every change."""

    def __init__(self, folder: InstanceFolder) -> None:
        self._folder = folder
        self.status = AgentStatus(reported=True, agent_pid=os.getpid())

    def update(self, **changes: Any) -> None:
        self.status = self.status.replace(**changes)
        self._folder.write_status(self.status)

    def phase(self, name: str, **changes: Any) -> None:
        """Enter phase ``name``, with ``changes`` in the same write."""
        self.update(phases=(*self.status.phases, Phase(name, now_iso())), **changes)


def open_store(access: StoreAccess | Mapping[str, Any]) -> ObjectStore:
    """The object store as the agent reaches it (a StoreAccess, or its JSON)."""
    if not isinstance(access, StoreAccess):
        access = StoreAccess.from_json(access)
    if access.kind == "local":
        if not access.root:
            raise ValueError("a local object store needs its root folder")
        return LocalObjectStore(Path(access.root))
    from shipyard.storage._s3 import S3ObjectStore

    return S3ObjectStore(
        access.endpoint_url,
        access.access_key_id,
        access.secret_access_key,
        access.region,
        access.max_attempts,
        access.session_token,
    )
