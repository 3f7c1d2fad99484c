"""Bringing objects from the store into an instance's folder: channels, prefixes, code."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from shipyard.core.training import parse_s3_uri, sharded
from shipyard.runtime.agent._io import JobInputError
from shipyard.storage import ObjectStore
from shipyard.storage._archives import ChunkReader, extract_tar


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
        for key in keys:
            self.fetch_object(bucket, key, target / relative_key(key, prefix), link=link)
        return len(keys)

    def prefix(self, uri: str, target: Path, *, link: bool) -> int:
        """Every object under ``uri`` into ``target``, keeping the keys' folders below it."""
        bucket, prefix, keys = self.list_keys(uri)
        base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        for key in keys:
            if key.startswith(base):
                self.fetch_object(bucket, key, target / key[len(base) :], link=link)
        return len(keys)

    def fetch_object(self, bucket: str, key: str, path: Path, *, link: bool) -> None:
        """Put an object at ``path``: a hard link to the stored file when it is local (inputs are
        mounted read-only in the sandbox, so the link cannot alter the object), else a copy."""
        path.parent.mkdir(parents=True, exist_ok=True)
        local = self.store.local_path(bucket, key)
        if local is not None:
            if link:
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
            files = extract_tar(ChunkReader(chunks), target, what=f"source directory {uri}")
        else:
            files = self.prefix(uri, target, link=False)
        self._log(f"Shipyard: source directory {uri}: {files} file(s)")
