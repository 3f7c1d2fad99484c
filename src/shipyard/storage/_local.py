"""The default object store: buckets as folders of plain files under the data dir.

Layout under ``root``::

    v2/buckets/<bucket>/<key path>        the object's bytes, a plain file (jobs can link it)
    v2/meta/<bucket>/<key path>.json      size, mtime, ETag, content type, user metadata
    bucketinfo/<bucket>.json              bucket creation time
    uploads/<upload id>/                  multipart uploads in progress: upload.json, part-NNNNN(.json)
    tmp/                                  files being written; renamed into place on commit

``<key path>`` is the key written as path names by :mod:`shipyard.storage._layout`: every key has
its own file, below its bucket folder whatever the key holds (``..`` segments, ``%``, 1,024 bytes
without a ``/``), and a key may be both an object and the beginning of others (``a``, ``a/`` and
``a/b`` side by side), as S3 allows. A data dir of the first layout (``buckets/``, ``meta/`` with
keys as plain paths) is moved to this one on open (:mod:`shipyard.storage._local_migration`).

Objects are written to ``tmp/`` and renamed into ``v2/buckets/`` (atomic on POSIX), then their
metadata file is written the same way. A metadata file describes the data file only while its
recorded size and mtime match the file's; otherwise (a crash between the two renames, or a file
put in the folder by hand) the metadata is recomputed from the bytes. So a crash at any point
leaves either the old object or the new one, never a torn one; it may leave empty folders, which
listings pass over.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from shipyard.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooSmall,
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
from shipyard.storage._layout import Entry, Kind, decode, key_names
from shipyard.storage._listing import collapse_delimited
from shipyard.storage._local_migration import migrate_first_layout
from shipyard.storage._local_writers import (
    DEFAULT_CONTENT_TYPE,
    _LocalObjectWriter,
    _LocalPartWriter,
    _utc,
    place,
)
from shipyard.storage._names import validate_bucket_name, validate_key

_CHUNK = 1024 * 1024
_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_\-]{16,64}")


class LocalObjectStore(ObjectStore):
    """Object store keeping each object as a file under ``root``. See the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        tree = self.root / "v2"
        self._buckets = tree / "buckets"
        self._meta = tree / "meta"
        self._bucketinfo = self.root / "bucketinfo"
        self._uploads = self.root / "uploads"
        self._tmp = self.root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        migrate_first_layout(self.root, tree)
        for folder in (self._buckets, self._meta, self._bucketinfo, self._uploads, self._tmp):
            folder.mkdir(parents=True, exist_ok=True)
        # Serialises the few multi-step changes (bucket create/delete, completing and aborting
        # uploads) that must not interleave; object writes themselves need no lock thanks to rename.
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
        names = key_names(validate_key(key))
        return bucket_dir.joinpath(*names), self._meta.joinpath(bucket, *names[:-1], names[-1] + ".json")

    def local_path(self, bucket: str, key: str) -> Path | None:
        data, _ = self._paths(bucket, key)
        return data if _is_file(data) else None

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
            if _has_files(path) or any(u["bucket"] == bucket for u in self._iter_uploads()):
                raise BucketNotEmpty(bucket)
            shutil.rmtree(path)  # empty folders only: a crash's leftovers
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
        try:
            st = data_path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchKey(bucket, key) from None
        if not stat.S_ISREG(st.st_mode):
            raise NoSuchKey(bucket, key)
        return self._info(bucket, key, data_path, meta_path, st)

    def _info(
        self, bucket: str, key: str, data_path: str | Path, meta_path: str | Path, st: os.stat_result
    ) -> ObjectInfo:
        meta = _read_meta(meta_path)
        # A writer renames its data into place, then its metadata: a read that falls between the two
        # waits a moment for the second rather than take the new bytes for a file put by hand (and
        # answer, and remember, the default content type).
        for _ in range(_META_WAITS):
            if _describes(meta, st):
                break
            time.sleep(0.005)
            meta = _read_meta(meta_path)
        if not _describes(meta, st):
            # The file was put here by hand, or a crash fell between the data and metadata renames:
            # derive the metadata from the bytes, and remember it.
            md5 = hashlib.md5()
            with open(data_path, "rb") as f:
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
                self._atomic_json(Path(meta_path), meta)
        assert meta is not None
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
        try:
            f = data_path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NoSuchKey(bucket, key) from None
        try:
            # fstat of the open file: the info describes exactly the bytes this handle will read,
            # even if the object is replaced meanwhile.
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise NoSuchKey(bucket, key)
            info = self._info(bucket, key, data_path, meta_path, st)
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
        for path in (data_path, meta_path):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                path.unlink()
        _prune(data_path.parent, self._buckets / bucket)
        _prune(meta_path.parent, self._meta / bucket)

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

    # -- listing --------------------------------------------------------------------------------
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
        entries = self._walk(
            bucket, str(bucket_dir), str(self._meta / bucket), "", prefix, start_after, group_by_folder
        )
        if delimiter and not group_by_folder:
            entries = (
                e
                for e in collapse_delimited(entries, prefix, delimiter)
                if not isinstance(e, str) or e > start_after  # a prefix a page already gave
            )
        return _page(entries, max_keys)

    def _walk(
        self, bucket: str, folder: str, meta: str, base: str, prefix: str, start_after: str, group: bool
    ) -> Iterator[ObjectInfo | str]:
        """Yield the objects below ``folder`` (the keys beginning with ``base``; their metadata
        below ``meta``) in S3 key order, and, when ``group``, each "/" folder past ``prefix`` as
        one common prefix instead."""
        entries = _entries(folder)
        if start_after.startswith(base):
            # Skip what sorts before start_after without looking at it: every entry before the
            # first one at or past it, but the folder (just before) whose keys hold it.
            rest = start_after[len(base) :]
            first = bisect.bisect_left(entries, rest, key=lambda e: e.span)
            if (
                first
                and entries[first - 1].kind is not Kind.FILE
                and rest.startswith(entries[first - 1].span)
            ):
                first -= 1
            entries = entries[first:]
        for entry in entries:
            span = base + entry.span
            if not span.startswith(prefix) and span > prefix:
                return  # this entry and every one after it sort past the prefix
            path = os.path.join(folder, entry.name)
            if entry.kind is Kind.FILE:
                if span > start_after and span.startswith(prefix):
                    info = self._listed(bucket, span, path, os.path.join(meta, entry.name + ".json"))
                    if info is not None:
                        yield info
                continue
            if not (span.startswith(prefix) or prefix.startswith(span)):
                continue
            if start_after >= span and not start_after.startswith(span):
                continue  # every key below this folder sorts before start_after
            if group and entry.kind is Kind.SLASH and span.startswith(prefix) and len(span) > len(prefix):
                if span > start_after and _has_files(path):
                    yield span
                continue
            yield from self._walk(
                bucket, path, os.path.join(meta, entry.name), span, prefix, start_after, group
            )

    def _listed(self, bucket: str, key: str, path: str, meta: str) -> ObjectInfo | None:
        try:
            return self._info(bucket, key, path, meta, os.stat(path))
        except FileNotFoundError:
            return None  # deleted while listing

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
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, ValueError):
                upload = json.loads((folder / "upload.json").read_text())
                upload["upload_id"] = folder.name
                yield upload

    def list_multipart_uploads(self, bucket: str, *, prefix: str = "") -> list[UploadInfo]:
        self._bucket_dir(bucket)
        found = [
            UploadInfo(
                u["upload_id"],
                bucket,
                u["key"],
                dt.datetime.fromisoformat(u["initiated"]),
                u.get("content_type") or DEFAULT_CONTENT_TYPE,
                u.get("metadata", {}),
            )
            for u in self._iter_uploads()
            if u.get("bucket") == bucket and str(u.get("key", "")).startswith(prefix)
        ]
        return sorted(found, key=lambda u: (u.key, u.initiated, u.upload_id))

    def abort_stale_uploads(self, max_age: dt.timedelta, *, now: dt.datetime | None = None) -> int:
        """As the base class does, and the folders of uploads a crash left without their
        ``upload.json`` (by the folder's age)."""
        now = now or dt.datetime.now(dt.UTC)
        removed = 0
        for folder in self._uploads.iterdir():
            try:
                initiated = dt.datetime.fromisoformat(
                    json.loads((folder / "upload.json").read_text())["initiated"]
                )
            except (OSError, ValueError, KeyError):
                try:
                    initiated = _utc(folder.stat().st_mtime_ns)
                except FileNotFoundError:
                    continue
            if now - initiated > max_age:
                with self._lock:
                    shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

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
                    f"The list of parts was not in ascending order: {numbers[:20]}",
                    field="Parts",
                    value=numbers[:20],
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
        with self._lock:
            folder, _ = self._upload(bucket, key, upload_id)
            shutil.rmtree(folder, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------------
    def _tmp_file(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="w-")
        # Readable by a sandboxed job's own uid through a hard-linked input (the data dir itself
        # is 0700: nobody else reaches the file).
        os.fchmod(fd, 0o644)
        return fd, Path(name)

    def _atomic_json(self, path: Path, data: dict[str, Any], *, make_folders: bool = True) -> None:
        fd, tmp = self._tmp_file()
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            if make_folders:
                place(tmp, path)
            else:
                os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise


def _entries(folder: str | Path) -> list[Entry]:
    """The layout's names in ``folder``, decoded and in key order (anything else passed over)."""
    found = []
    try:
        with os.scandir(folder) as it:
            for item in it:
                entry = decode(item.name)
                if entry is None or item.is_symlink():
                    continue
                if (entry.kind is Kind.FILE) == item.is_dir(follow_symlinks=False):
                    continue  # a folder where a file belongs, or the other way: not the layout's
                found.append(entry)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found.sort(key=_order)
    return found


def _order(entry: Entry) -> tuple[str, int]:
    return entry.span, entry.rank


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _has_files(folder: str | Path) -> bool:
    return any(files for _, _, files in os.walk(folder))


def _prune(folder: Path, top: Path) -> None:
    """Remove folders a delete left empty, from ``folder`` up to (not including) ``top``."""
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty, or already gone
        folder = folder.parent


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


_META_WAITS = 20  # 5 ms each: a commit's two renames are microseconds apart


def _read_meta(meta_path: str | Path) -> dict[str, Any] | None:
    try:
        with open(meta_path, "rb") as f:
            meta = json.load(f)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _describes(meta: dict[str, Any] | None, st: os.stat_result) -> bool:
    """Whether ``meta`` is the metadata of the data file whose stat is ``st``."""
    return meta is not None and meta.get("size") == st.st_size and meta.get("mtime_ns") == st.st_mtime_ns
