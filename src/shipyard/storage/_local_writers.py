"""The local object store's writers: an object, or one part of a multipart upload, is written to
``tmp/`` and renamed into place on commit (see :mod:`shipyard.storage._local`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.errors import NoSuchUpload
from shipyard.storage._base import ObjectInfo, ObjectWriter, PartInfo

if TYPE_CHECKING:
    from shipyard.storage._local import LocalObjectStore

DEFAULT_CONTENT_TYPE = "binary/octet-stream"


def _utc(ts_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC)


def place(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``, making its folders; again if a delete pruned one meanwhile."""
    for attempt in range(5):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, path)
            return
        except FileNotFoundError:
            if attempt == 4 or not tmp.exists():
                raise


class _LocalObjectWriter(ObjectWriter):
    def __init__(
        self,
        store: LocalObjectStore,
        bucket: str,
        key: str,
        data_path: Path,
        meta_path: Path,
        content_type: str | None,
        metadata: dict[str, str],
        expected_md5: bytes | None,
    ) -> None:
        super().__init__(expected_md5)
        self._store = store
        self._bucket = bucket
        self._key = key
        self._data_path = data_path
        self._meta_path = meta_path
        self._content_type = content_type or DEFAULT_CONTENT_TYPE
        self._metadata = metadata
        fd, self._tmp = store._tmp_file()
        self.file = os.fdopen(fd, "wb")
        self.etag_override: str | None = None
        self._done = False

    def _write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> ObjectInfo:
        etag = self._check_digest()
        if self.etag_override:
            etag = self.etag_override
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        st = self._tmp.stat()
        meta = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "etag": etag,
            "content_type": self._content_type,
            "metadata": self._metadata,
        }
        try:
            place(self._tmp, self._data_path)
            self._store._atomic_json(self._meta_path, meta)
        finally:
            self._done = True
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
        return ObjectInfo(
            self._bucket,
            self._key,
            st.st_size,
            etag,
            _utc(st.st_mtime_ns),
            self._content_type,
            self._metadata,
        )

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


class _LocalPartWriter(ObjectWriter):
    def __init__(
        self, store: LocalObjectStore, folder: Path, part_number: int, expected_md5: bytes | None
    ) -> None:
        super().__init__(expected_md5)
        self._store = store
        self._folder = folder
        self._number = part_number
        fd, self._tmp = store._tmp_file()
        self._file = os.fdopen(fd, "wb")
        self._done = False

    def _write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> PartInfo:
        etag = self._check_digest()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        st = self._tmp.stat()
        try:
            if not (self._folder / "upload.json").exists():
                raise NoSuchUpload(self._folder.name)
            try:
                os.replace(self._tmp, self._folder / f"part-{self._number:05d}")
                self._store._atomic_json(
                    self._folder / f"part-{self._number:05d}.json",
                    {
                        "part_number": self._number,
                        "size": st.st_size,
                        "etag": etag,
                        "mtime_ns": st.st_mtime_ns,
                    },
                    make_folders=False,  # an upload aborted meanwhile stays gone
                )
            except FileNotFoundError:  # aborted meanwhile
                raise NoSuchUpload(self._folder.name) from None
        finally:
            self._done = True
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
        return PartInfo(self._number, st.st_size, etag, _utc(st.st_mtime_ns))

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
