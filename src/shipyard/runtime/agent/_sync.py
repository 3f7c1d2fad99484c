"""Mirroring a folder to the object store while a job runs."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from shipyard.core.training import parse_s3_uri
from shipyard.storage import ObjectStore


class FolderSync:
    """Mirrors a folder to an S3 URI prefix while the job runs: checkpoints (so a retry after a
    lost instance resumes from the last one, as SageMaker does) and Continuous processing outputs.
    A final pass runs at stop; :meth:`sync` alone uploads once (processing outputs at the end)."""

    def __init__(
        self,
        store: ObjectStore,
        log: Callable[[str], None],
        folder: Path,
        uri: str,
        interval: float,
        what: str,
        *,
        skip_present: bool = False,
    ) -> None:
        self._store = store
        self._log = log
        self._interval = interval
        self._folder = folder
        self._uri = uri
        self.what = what
        self._bucket, prefix = parse_s3_uri(uri, field="S3Uri")
        self._base = prefix.rstrip("/") + "/" if prefix else ""
        self._uploaded: dict[Path, tuple[int, int]] = (  # restored checkpoints are there already
            {
                p: (st.st_size, st.st_mtime_ns)
                for p in self._folder.rglob("*")
                if p.is_file() and (st := p.stat())
            }
            if skip_present
            else {}
        )
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{what}-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        count = self.sync()
        if count:
            self._log(f"Shipyard: saved {count} {self.what} file(s) to {self._uri}")

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                self.sync()
            except Exception as exc:  # keep running; the final pass reports persistent trouble
                sys.stderr.write(f"{self.what} sync: {exc}\n")

    def sync(self) -> int:
        count = 0
        for path in sorted(self._folder.rglob("*")):
            if not path.is_file():
                continue
            st = path.stat()
            if self._uploaded.get(path) == (st.st_size, st.st_mtime_ns):
                continue
            key = self._base + path.relative_to(self._folder).as_posix()
            with self._store.open_writer(self._bucket, key) as writer, path.open("rb") as f:
                while chunk := f.read(1024 * 1024):
                    writer.write(chunk)
                writer.commit()
            self._uploaded[path] = (st.st_size, st.st_mtime_ns)
            count += 1
        return count
