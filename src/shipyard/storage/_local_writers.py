"""The local object store's writers: an object, or one part of a multipart upload, is written to
``tmp/`` and renamed into place on commit (see :mod:`shipyard.storage._local`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.errors import InvalidObjectKey, NoSuchUpload
from shipyard.storage._base import ObjectInfo, ObjectWriter, PartInfo
from shipyard.storage._names import is_folder_key

if TYPE_CHECKING:
    from shipyard.storage._local import LocalObjectStore

DEFAULT_CONTENT_TYPE = "binary/octet-stream"


def _utc(ts_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC)


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
        key, bucket_dir = self._key, self._store._buckets / self._bucket
        if is_folder_key(key) and self._size:
            raise InvalidObjectKey(key, "keys ending in '/' are folder markers and must be empty")
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
            self._make_parents(bucket_dir)
            if is_folder_key(key):
                self._data_path.mkdir(exist_ok=True)
                self._tmp.unlink()
            else:
                if self._data_path.is_dir():
                    raise InvalidObjectKey(
                        key,
                        f"keys below {key + '/'!r} exist; the local object store keeps keys as files, "
                        "so a key cannot also be the folder of other keys",
                    )
                os.replace(self._tmp, self._data_path)
            self._store._atomic_json(self._meta_path, meta)
        except NotADirectoryError:
            raise self._conflict(bucket_dir) from None
        finally:
            self._done = True
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
        return ObjectInfo(
            self._bucket, key, st.st_size, etag, _utc(st.st_mtime_ns), self._content_type, self._metadata
        )

    def _make_parents(self, bucket_dir: Path) -> None:
        try:
            self._data_path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise self._conflict(bucket_dir) from None

    def _conflict(self, bucket_dir: Path) -> InvalidObjectKey:
        parent = self._data_path.parent
        while parent != bucket_dir and not parent.is_file():
            parent = parent.parent
        name = parent.relative_to(bucket_dir).as_posix()
        return InvalidObjectKey(
            self._key,
            f"an object named {name!r} exists; the local object store keeps keys as files, so a key "
            "cannot also be the folder of other keys",
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
            os.replace(self._tmp, self._folder / f"part-{self._number:05d}")
            self._store._atomic_json(
                self._folder / f"part-{self._number:05d}.json",
                {"part_number": self._number, "size": st.st_size, "etag": etag, "mtime_ns": st.st_mtime_ns},
            )
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
