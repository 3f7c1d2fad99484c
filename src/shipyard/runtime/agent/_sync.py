"""Mirroring a folder to the object store while a job runs, never following what the job planted."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from shipyard.core.training import parse_s3_uri
from shipyard.runtime.container import ML_ROOT
from shipyard.storage import ObjectStore
from shipyard.storage._nofollow import walk_folder


def shown_path(ml: Path, folder: Path) -> str:
    """``folder`` (under the instance's ``ml``) as the job sees it: ``/opt/ml/...``."""
    return str(ML_ROOT / folder.relative_to(ml))


class FolderSync:
    """Mirrors a folder to an S3 URI prefix while the job runs: checkpoints (so a retry after a
    lost instance resumes from the last one, as SageMaker does) and Continuous processing outputs.
    A final pass runs at stop; :meth:`sync` alone uploads once (processing outputs at the end).

    Symbolic links (to files or folders), hard links and special files are not uploaded: each is
    named once in the job's log (``shown`` is the folder as the job sees it, ``/opt/ml/...``).
    Every component below ``within`` (the instance's ``ml``) is opened with ``O_NOFOLLOW``, so a
    link swapped in after a check, or for a folder on the way, is not followed either."""

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
        shown: str | None = None,
        within: Path | None = None,
    ) -> None:
        self._store = store
        self._log = log
        self._interval = interval
        self._folder = folder
        self._uri = uri
        self.what = what
        self._shown = (shown or folder.name).rstrip("/")
        self._within = within
        self._reported: set[str] = set()
        self._bucket, prefix = parse_s3_uri(uri, field="S3Uri")
        self._base = prefix.rstrip("/") + "/" if prefix else ""
        self._uploaded: dict[str, tuple[int, int]] = (  # restored checkpoints are there already
            {
                e.relative: (e.stat.st_size, e.stat.st_mtime_ns)
                for e in walk_folder(folder, lambda path, why: None, within=within)
                if not e.is_dir
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
        """Upload what is new or changed since the last pass; how many files."""
        count = 0
        for entry in walk_folder(self._folder, self._skipped, within=self._within):
            st = entry.stat
            if entry.is_dir or self._uploaded.get(entry.relative) == (st.st_size, st.st_mtime_ns):
                continue
            f = entry.open()
            if f is None:
                continue
            with f, self._store.open_writer(self._bucket, self._base + entry.relative) as writer:
                while chunk := f.read(1024 * 1024):
                    writer.write(chunk)
                writer.commit()
            self._uploaded[entry.relative] = (st.st_size, st.st_mtime_ns)
            count += 1
        return count

    def _skipped(self, relative: str, why: str) -> None:
        if relative not in self._reported:  # once, not at every pass
            self._reported.add(relative)
            self._log(f"Shipyard: skipped {self._shown}/{relative}: {why}")
