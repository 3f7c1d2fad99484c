"""Bringing objects from the store into an instance's folder: channels, prefixes, code."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from shipyard.core.training import parse_s3_uri, sharded
from shipyard.errors import ValidationError
from shipyard.runtime.agent._io import JobInputError
from shipyard.storage import ObjectStore
from shipyard.storage._archives import ChunkReader, extract_tar

# Objects from this size on are hard-linked into a channel rather than copied (see
# Inputs.fetch_object): copying 64 MiB took 39 ms on the 2-core development machine.
LINK_MIN_BYTES = 64 * 2**20


def relative_key(key: str, prefix: str) -> str:
    """Where an object under an S3Prefix lands in its input folder, as SageMaker places it: the
    prefix is a folder when the key goes on below it (``data/train`` + ``data/train/a.csv`` →
    ``a.csv``), an object named exactly is its file name (``data/train.csv`` → ``train.csv``), and
    otherwise the key is kept from the prefix's folder on (``data/tr`` + ``data/train.csv`` →
    ``train.csv``)."""
    if key == prefix:
        return key.rsplit("/", 1)[-1]
    rest = key[len(prefix) :]
    if prefix.endswith("/") or rest.startswith("/"):
        return rest.lstrip("/")
    return key[prefix.rfind("/") + 1 :]


def inside(target: Path, relative: str, what: str) -> Path:
    """``target / relative``, refused (a JobInputError naming ``what`` and the path) when the
    path is empty, absolute or has a ``..`` part: an object key or a manifest entry may hold any
    of those, and the file must land in its input folder."""
    parts = relative.split("/")
    if not relative or relative.startswith("/") or ".." in parts or "\x00" in relative:
        raise JobInputError(
            f"{what}: {relative!r} would be written outside its folder (an empty or absolute path, "
            "or a '..' part); give keys and manifest entries relative to their prefix"
        )
    return target / relative


class Inputs:
    """Fetches from ``store`` for one instance (``host_index`` of ``host_count``), logging to ``log``."""

    def __init__(
        self, store: ObjectStore, log: Callable[[str], None], host_index: int, host_count: int
    ) -> None:
        self.store = store
        self._log = log
        self._host_index = host_index
        self._host_count = host_count

    def list_keys(self, uri: str) -> tuple[str, str, list[str]]:
        """The bucket, the prefix and every object key under ``uri``."""
        bucket, prefix = parse_s3_uri(uri, field="S3Uri")
        keys: list[str] = []
        start = ""
        while True:
            page = self.store.list_objects(bucket, prefix=prefix, start_after=start)
            keys += [o.key for o in page.objects if not o.key.endswith("/")]
            if not page.is_truncated or page.next_start_after is None:
                return bucket, prefix, keys
            start = page.next_start_after

    def shard(self, keys: list[str], distribution: str) -> list[str]:
        return sharded(keys, self._host_index, self._host_count) if distribution == "ShardedByS3Key" else keys

    def channel(self, name: str, uri: str, distribution: str, target: Path, *, link: bool) -> int:
        """A training channel's objects into ``target``; how many."""
        bucket, prefix, keys = self.list_keys(uri)
        if not keys:
            raise JobInputError(f"No objects found under {uri} for channel {name!r}")
        target.mkdir(parents=True, exist_ok=True)
        keys = self.shard(keys, distribution)
        paths = [inside(target, relative_key(key, prefix), f"channel {name!r}") for key in keys]
        for key, path in zip(keys, paths, strict=True):
            self.fetch_object(bucket, key, path, link=link)
        return len(keys)

    def prefix(self, uri: str, target: Path, *, link: bool) -> int:
        """Every object under ``uri`` into ``target``, keeping the keys' folders below it."""
        bucket, prefix, keys = self.list_keys(uri)
        base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        below = [key for key in keys if key.startswith(base)]
        paths = [inside(target, key[len(base) :], uri) for key in below]
        for key, path in zip(below, paths, strict=True):
            self.fetch_object(bucket, key, path, link=link)
        return len(keys)

    def fetch_object(self, bucket: str, key: str, path: Path, *, link: bool) -> None:
        """Put an object at ``path``, a file the job may change as a SageMaker job may change its
        channels' files: a copy, or for a large object (:data:`LINK_MIN_BYTES`) a hard link to the
        stored file when ``link`` says the job runs as a uid of its own (the link stays the
        store's, which that uid cannot write or chmod; the job may still delete or replace it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        local = self.store.local_path(bucket, key)
        if local is not None:
            if link and local.stat().st_size >= LINK_MIN_BYTES:
                try:
                    os.link(local, path)
                    return
                except OSError:
                    pass  # another filesystem: copy instead
            shutil.copyfile(local, path)
            return
        _, _, chunks = self.store.read_object(bucket, key)
        with path.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)

    def code(self, uri: str, target: Path) -> None:
        """The source directory (a tarball, or the objects under a prefix) into ``target``."""
        bucket, key = parse_s3_uri(uri, field="sagemaker_submit_directory")
        if key.endswith((".tar.gz", ".tgz", ".tar")):
            _, _, chunks = self.store.read_object(bucket, key)
            try:
                files = extract_tar(ChunkReader(chunks), target, what=f"source directory {uri}")
            except ValidationError as exc:  # the job's code: its ClientError
                raise JobInputError(exc.message) from None
        else:
            files = self.prefix(uri, target, link=False)
        self._log(f"Shipyard: source directory {uri}: {files} file(s)")
