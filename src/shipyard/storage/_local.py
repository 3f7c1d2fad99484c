"""The default object store: buckets as folders of plain files under the data dir.

Layout under ``root``::

    buckets/<bucket>/<key>            the object's bytes, a plain file (jobs can link it)
    meta/<bucket>/<key>.json          size, mtime, ETag, content type, user metadata
    bucketinfo/<bucket>.json          bucket creation time
    uploads/<upload id>/              multipart uploads in progress: upload.json, part-NNNNN(.json)
    tmp/                              files being written; renamed into place on commit

Objects are written to ``tmp/`` and renamed into ``buckets/`` (atomic on POSIX), then their
metadata file is written the same way. A metadata file describes the data file only while its
recorded size and mtime match the file's; otherwise (a crash between the two renames, or a file
put in the folder by hand) the metadata is recomputed from the bytes. So a crash at any point
leaves either the old object or the new one, never a torn one.

Because keys are paths, a key cannot be both an object and a prefix of other keys ("a" and
"a/b"); such a write is refused with a clear error rather than silently shadowing data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from shipyard.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooSmall,
    InvalidObjectKey,
    InvalidPart,
    InvalidPartOrder,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    ValidationError,
)
from shipyard.storage._base import (
    MAX_LIST_KEYS,
    MAX_PART_NUMBER,
    MIN_PART_SIZE,
    BucketInfo,
    ByteRange,
    ListPage,
    ObjectInfo,
    ObjectStore,
    ObjectWriter,
    PartInfo,
    UploadInfo,
    multipart_etag,
    resolve_range,
)
from shipyard.storage._listing import collapse_delimited
from shipyard.storage._local_writers import DEFAULT_CONTENT_TYPE, _LocalObjectWriter, _LocalPartWriter, _utc
from shipyard.storage._names import is_folder_key, validate_bucket_name, validate_key

_CHUNK = 1024 * 1024
_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_\-]{16,64}")
_FOLDER_META = ".json"  # meta/<bucket>/<folder>/.json marks the folder object "<folder>/"


class LocalObjectStore(ObjectStore):
    """Object store keeping each object as a file under ``root``. See the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._buckets = self.root / "buckets"
        self._meta = self.root / "meta"
        self._bucketinfo = self.root / "bucketinfo"
        self._uploads = self.root / "uploads"
        self._tmp = self.root / "tmp"
        for folder in (self._buckets, self._meta, self._bucketinfo, self._uploads, self._tmp):
            folder.mkdir(parents=True, exist_ok=True)
        # Serialises the few multi-step changes (bucket create/delete, completing uploads) that
        # must not interleave; object writes themselves need no lock thanks to rename.
        self._lock = threading.Lock()

    def clean_tmp(self) -> None:
        """Remove leftovers of writes interrupted by a crash. Call only when no writer runs."""
        for entry in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()

    def bucket_bytes(self, bucket: str) -> int:
        """The sizes of the bucket's files, summed without reading their metadata."""
        total = 0
        for folder, _, files in os.walk(self._bucket_dir(bucket)):
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                    total += os.stat(os.path.join(folder, name)).st_size
        return total

    # -- paths ----------------------------------------------------------------------------------
    def _bucket_dir(self, bucket: str) -> Path:
        validate_bucket_name(bucket)
        path = self._buckets / bucket
        if not path.is_dir():
            raise NoSuchBucket(bucket)
        return path

    def _paths(self, bucket: str, key: str) -> tuple[Path, Path]:
        """Data file and metadata file of a key (validated, inside the bucket's folders)."""
        bucket_dir = self._bucket_dir(bucket)
        validate_key(key)
        if is_folder_key(key):
            return bucket_dir / key.rstrip("/"), self._meta / bucket / key / _FOLDER_META
        return bucket_dir / key, self._meta / bucket / (key + ".json")

    def local_path(self, bucket: str, key: str) -> Path | None:
        data, _ = self._paths(bucket, key)
        return data if data.is_file() else None

    # -- buckets --------------------------------------------------------------------------------
    def create_bucket(self, bucket: str) -> BucketInfo:
        validate_bucket_name(bucket)
        with self._lock:
            path = self._buckets / bucket
            if path.exists():
                raise BucketAlreadyOwnedByYou(bucket)
            now = dt.datetime.now(dt.UTC)
            self._atomic_json(self._bucketinfo / f"{bucket}.json", {"created": now.isoformat()})
            (self._meta / bucket).mkdir(exist_ok=True)
            path.mkdir()
        return BucketInfo(bucket, now)

    def delete_bucket(self, bucket: str) -> None:
        with self._lock:
            path = self._bucket_dir(bucket)
            if any(path.iterdir()) or any(u["bucket"] == bucket for u in self._iter_uploads()):
                raise BucketNotEmpty(bucket)
            path.rmdir()
            shutil.rmtree(self._meta / bucket, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (self._bucketinfo / f"{bucket}.json").unlink()

    def head_bucket(self, bucket: str) -> BucketInfo:
        path = self._bucket_dir(bucket)
        try:
            created = dt.datetime.fromisoformat(
                json.loads((self._bucketinfo / f"{bucket}.json").read_text())["created"]
            )
        except (FileNotFoundError, ValueError, KeyError):
            created = _utc(path.stat().st_mtime_ns)
        return BucketInfo(bucket, created)

    def list_buckets(self) -> list[BucketInfo]:
        names = sorted(p.name for p in self._buckets.iterdir() if p.is_dir())
        return [self.head_bucket(name) for name in names]

    # -- objects --------------------------------------------------------------------------------
    def open_writer(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        expected_md5: bytes | None = None,
    ) -> ObjectWriter:
        data_path, meta_path = self._paths(bucket, key)
        return _LocalObjectWriter(
            self, bucket, key, data_path, meta_path, content_type, dict(metadata or {}), expected_md5
        )

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        data_path, meta_path = self._paths(bucket, key)
        if is_folder_key(key):
            return self._folder_info(bucket, key, meta_path)
        try:
            st = data_path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchKey(bucket, key) from None
        if not data_path.is_file():
            raise NoSuchKey(bucket, key)
        return self._info(bucket, key, data_path, meta_path, st)

    def _folder_info(self, bucket: str, key: str, meta_path: Path) -> ObjectInfo:
        try:
            meta = json.loads(meta_path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchKey(bucket, key) from None
        return ObjectInfo(
            bucket,
            key,
            0,
            hashlib.md5(b"").hexdigest(),
            _utc(meta["mtime_ns"]),
            meta.get("content_type", DEFAULT_CONTENT_TYPE),
            meta.get("metadata", {}),
        )

    def _info(
        self, bucket: str, key: str, data_path: Path, meta_path: Path, st: os.stat_result
    ) -> ObjectInfo:
        meta: dict[str, Any] | None
        try:
            meta = json.loads(meta_path.read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            meta = None
        if meta is None or meta.get("size") != st.st_size or meta.get("mtime_ns") != st.st_mtime_ns:
            # The file was put here by hand, or a crash fell between the data and metadata renames:
            # derive the metadata from the bytes, and remember it.
            md5 = hashlib.md5()
            with data_path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    md5.update(chunk)
            meta = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "etag": md5.hexdigest(),
                "content_type": (meta or {}).get("content_type", DEFAULT_CONTENT_TYPE),
                "metadata": (meta or {}).get("metadata", {}),
            }
            with contextlib.suppress(OSError):
                self._atomic_json(meta_path, meta)
        return ObjectInfo(
            bucket,
            key,
            st.st_size,
            meta["etag"],
            _utc(st.st_mtime_ns),
            meta.get("content_type") or DEFAULT_CONTENT_TYPE,
            meta.get("metadata", {}),
        )

    def read_object(
        self, bucket: str, key: str, byte_range: tuple[int | None, int | None] | None = None
    ) -> tuple[ObjectInfo, ByteRange | None, Iterator[bytes]]:
        data_path, meta_path = self._paths(bucket, key)
        if is_folder_key(key):
            info = self._folder_info(bucket, key, meta_path)
            if byte_range is not None:
                resolve_range(byte_range[0], byte_range[1], 0)
            return info, None, iter(())
        try:
            f = data_path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NoSuchKey(bucket, key) from None
        try:
            # fstat of the open file: the info describes exactly the bytes this handle will read,
            # even if the object is replaced meanwhile.
            info = self._info(bucket, key, data_path, meta_path, os.fstat(f.fileno()))
            resolved = None
            if byte_range is not None:
                resolved = resolve_range(byte_range[0], byte_range[1], info.size)
                f.seek(resolved.start)
        except BaseException:
            f.close()
            raise
        remaining = resolved.length if resolved else info.size
        return info, resolved, _read_chunks(f, remaining)

    def delete_object(self, bucket: str, key: str) -> None:
        data_path, meta_path = self._paths(bucket, key)
        bucket_dir = self._buckets / bucket
        if is_folder_key(key):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                meta_path.unlink()
            self._prune_empty(data_path, bucket_dir, self._meta / bucket)
            return
        if data_path.is_dir():
            return  # "a" when only "a/..." keys exist: no such object, and deleting nothing is fine
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            data_path.unlink()
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            meta_path.unlink()
        self._prune_empty(data_path.parent, bucket_dir, self._meta / bucket)

    def _prune_empty(self, folder: Path, bucket_dir: Path, meta_root: Path) -> None:
        """Remove folders left empty by a delete, up to the bucket, keeping folder objects."""
        while folder != bucket_dir and bucket_dir in folder.parents:
            rel = folder.relative_to(bucket_dir)
            if (meta_root / rel / _FOLDER_META).exists():
                return
            try:
                folder.rmdir()
            except OSError:
                return  # not empty, or already gone
            with contextlib.suppress(OSError):
                (meta_root / rel).rmdir()
            folder = folder.parent

    def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        info, _, chunks = self.read_object(src_bucket, src_key)
        with self.open_writer(
            dst_bucket,
            dst_key,
            content_type=content_type if content_type is not None else info.content_type,
            metadata=metadata if metadata is not None else info.metadata,
        ) as writer:
            for chunk in chunks:
                writer.write(chunk)
            result = writer.commit()
        assert isinstance(result, ObjectInfo)
        return result

    def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = MAX_LIST_KEYS,
    ) -> ListPage:
        bucket_dir = self._bucket_dir(bucket)
        group_by_folder = delimiter == "/"
        entries = self._walk(bucket, bucket_dir, "", prefix, start_after, group_by_folder)
        if delimiter and not group_by_folder:
            entries = collapse_delimited(entries, prefix, delimiter)
        return _page(entries, max_keys)

    def _walk(
        self, bucket: str, folder: Path, rel: str, prefix: str, start_after: str, group: bool
    ) -> Iterator[ObjectInfo | str]:
        """Yield objects (and, when ``group``, folder common prefixes) in S3 key order.

        Sorting names with a "/" appended to folders gives S3's order: "a-b" < "a/" < "a0".
        """
        try:
            with os.scandir(folder) as it:
                children = sorted(((e.name + "/" if e.is_dir() else e.name), e) for e in it)
        except (FileNotFoundError, NotADirectoryError):
            return
        meta_root = self._meta / bucket
        for sort_name, entry in children:
            key = rel + sort_name
            if sort_name.endswith("/"):
                if not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if start_after >= key and not start_after.startswith(key):
                    continue  # every key below this folder sorts before start_after
                if group and key.startswith(prefix) and len(key) > len(prefix):
                    if key > start_after and self._has_keys(bucket, Path(entry.path), key):
                        yield key
                    continue
                if key > start_after and key.startswith(prefix) and (meta_root / key / _FOLDER_META).exists():
                    yield self._folder_info(bucket, key, meta_root / key / _FOLDER_META)
                yield from self._walk(bucket, Path(entry.path), key, prefix, start_after, group)
            elif key > start_after and key.startswith(prefix):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue  # deleted while listing
                yield self._info(bucket, key, Path(entry.path), meta_root / (key + ".json"), st)

    def _has_keys(self, bucket: str, folder: Path, key: str) -> bool:
        if (self._meta / bucket / key / _FOLDER_META).exists():
            return True
        for dirpath, _, filenames in os.walk(folder):
            if filenames:
                return True
            rel = Path(dirpath).relative_to(self._buckets / bucket).as_posix()
            if (self._meta / bucket / rel / _FOLDER_META).exists():
                return True
        return False

    # -- multipart uploads ----------------------------------------------------------------------
    def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> UploadInfo:
        self._paths(bucket, key)
        if is_folder_key(key):
            raise InvalidObjectKey(key, "folder keys (ending in '/') cannot be uploaded in parts")
        upload_id = secrets.token_urlsafe(24)
        info = UploadInfo(
            upload_id,
            bucket,
            key,
            dt.datetime.now(dt.UTC),
            content_type or DEFAULT_CONTENT_TYPE,
            dict(metadata or {}),
        )
        folder = self._uploads / upload_id
        folder.mkdir()
        self._atomic_json(
            folder / "upload.json",
            {
                "bucket": bucket,
                "key": key,
                "initiated": info.initiated.isoformat(),
                "content_type": info.content_type,
                "metadata": info.metadata,
            },
        )
        return info

    def _upload(self, bucket: str, key: str, upload_id: str) -> tuple[Path, dict[str, Any]]:
        self._bucket_dir(bucket)
        if not _UPLOAD_ID_RE.fullmatch(upload_id):
            raise NoSuchUpload(upload_id)
        folder = self._uploads / upload_id
        try:
            upload = json.loads((folder / "upload.json").read_text())
        except (FileNotFoundError, ValueError):
            raise NoSuchUpload(upload_id) from None
        if upload["bucket"] != bucket or upload["key"] != key:
            raise NoSuchUpload(upload_id)
        return folder, upload

    def _iter_uploads(self) -> Iterator[dict[str, Any]]:
        for folder in self._uploads.iterdir():
            with contextlib.suppress(FileNotFoundError, ValueError):
                yield json.loads((folder / "upload.json").read_text())

    def open_part_writer(
        self, bucket: str, key: str, upload_id: str, part_number: int, *, expected_md5: bytes | None = None
    ) -> ObjectWriter:
        folder, _ = self._upload(bucket, key, upload_id)
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise ValidationError(
                f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive; got {part_number}",
                field="PartNumber",
                value=part_number,
            )
        return _LocalPartWriter(self, folder, part_number, expected_md5)

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]:
        folder, _ = self._upload(bucket, key, upload_id)
        parts = []
        for meta_file in sorted(folder.glob("part-*.json")):
            with contextlib.suppress(FileNotFoundError, ValueError):
                meta = json.loads(meta_file.read_text())
                parts.append(
                    PartInfo(meta["part_number"], meta["size"], meta["etag"], _utc(meta["mtime_ns"]))
                )
        return parts

    def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> ObjectInfo:
        with self._lock:
            folder, upload = self._upload(bucket, key, upload_id)
            if not parts:
                raise InvalidPart("You must specify at least one part", field="Parts", value=[])
            numbers = [n for n, _ in parts]
            if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
                raise InvalidPartOrder(
                    f"The list of parts was not in ascending order: {numbers}", field="Parts", value=numbers
                )
            stored = {p.part_number: p for p in self.list_parts(bucket, key, upload_id)}
            for index, (number, etag) in enumerate(parts):
                part = stored.get(number)
                if part is None or part.etag != etag.strip('"'):
                    raise InvalidPart(
                        f"Part {number} with ETag {etag!r} was not found in upload {upload_id!r}; "
                        "upload it again or list the parts to see their ETags",
                        field="PartNumber",
                        value=number,
                    )
                if index < len(parts) - 1 and part.size < MIN_PART_SIZE:
                    raise EntityTooSmall(
                        f"Part {number} is {part.size} bytes; every part but the last must be at least "
                        f"{MIN_PART_SIZE} bytes",
                        field="PartNumber",
                        value=number,
                    )
            writer = self.open_writer(
                bucket, key, content_type=upload["content_type"], metadata=upload["metadata"]
            )
            assert isinstance(writer, _LocalObjectWriter)
            with writer:
                for number, _ in parts:
                    # Parts are already hashed; append them without hashing again.
                    with (folder / f"part-{number:05d}").open("rb") as src:
                        shutil.copyfileobj(src, writer.file, _CHUNK)
                    writer._size += stored[number].size
                writer.etag_override = multipart_etag([stored[n].etag for n, _ in parts])
                info = writer.commit()
            shutil.rmtree(folder, ignore_errors=True)
        assert isinstance(info, ObjectInfo)
        return info

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        folder, _ = self._upload(bucket, key, upload_id)
        shutil.rmtree(folder, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------------
    def _tmp_file(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="w-")
        return fd, Path(name)

    def _atomic_json(self, path: Path, data: dict[str, Any]) -> None:
        fd, tmp = self._tmp_file()
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise


def _read_chunks(f: Any, remaining: int) -> Iterator[bytes]:
    try:
        while remaining > 0:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        f.close()


def _page(entries: Iterator[ObjectInfo | str], max_keys: int) -> ListPage:
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    last: str | None = None
    for entry in entries:
        if len(objects) + len(prefixes) >= max_keys:
            return ListPage(objects, prefixes, True, last)
        if isinstance(entry, str):
            prefixes.append(entry)
            last = entry
        else:
            objects.append(entry)
            last = entry.key
    return ListPage(objects, prefixes, False, None)
