"""Reading a data dir the first layout wrote, once, on open.

The first layout kept a key as the same path below ``buckets/<bucket>/`` (metadata at
``meta/<bucket>/<key>.json``, a folder object ``data/`` as ``meta/<bucket>/data/.json``). The
migration builds the current tree (see :mod:`shipyard.storage._layout`) in ``migrating/`` with
hard links to the same files (nothing is copied, mtimes stay, so the metadata still describes its
bytes), then renames it to ``v2/`` in one step and only then removes the old folders. A crash before
the rename leaves the old layout whole (the next open starts again); after it, the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from shipyard.errors import InvalidObjectKey
from shipyard.storage._layout import key_names
from shipyard.storage._names import validate_key

log = logging.getLogger(__name__)


def migrate_first_layout(root: Path, tree: Path) -> None:
    """Move ``root/buckets`` and ``root/meta`` (the first layout), if there, into ``tree``."""
    old_buckets, old_meta = root / "buckets", root / "meta"
    if not old_buckets.is_dir() and not old_meta.is_dir():
        return
    with _locked(root / "migrate.lock"):
        if not tree.is_dir():
            build = root / "migrating"
            shutil.rmtree(build, ignore_errors=True)  # a crash's half-made attempt
            (build / "buckets").mkdir(parents=True)
            (build / "meta").mkdir()
            moved = 0
            if old_buckets.is_dir():
                for bucket in sorted(p.name for p in old_buckets.iterdir() if _is_real_dir(p)):
                    moved += _migrate_bucket(bucket, old_buckets / bucket, old_meta / bucket, build)
            os.sync()  # every link and folder on disk before the new tree takes over
            os.rename(build, tree)
            log.info("Object store: %d object(s) moved to the current layout in %s", moved, tree)
        shutil.rmtree(old_buckets, ignore_errors=True)
        shutil.rmtree(old_meta, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _is_real_dir(path: Path) -> bool:
    return stat.S_ISDIR(os.lstat(path).st_mode)


def _migrate_bucket(bucket: str, data: Path, meta: Path, build: Path) -> int:
    data_dst, meta_dst = build / "buckets" / bucket, build / "meta" / bucket
    data_dst.mkdir()
    meta_dst.mkdir()
    moved = 0
    for folder, _, files in os.walk(data):  # does not descend into linked folders
        rel = os.path.relpath(folder, data)
        for name in files:
            path = os.path.join(folder, name)
            key = name if rel == "." else f"{rel}/{name}"
            names = _names_or_none(bucket, key, path)
            if names is None:
                continue
            _place(path, data_dst.joinpath(*names))
            old_meta = meta / (key + ".json")
            if old_meta.is_file() and not old_meta.is_symlink():
                _place(str(old_meta), meta_dst.joinpath(*names[:-1], names[-1] + ".json"))
            moved += 1
    for folder, _, files in os.walk(meta):
        rel = os.path.relpath(folder, meta)
        if rel == "." or ".json" not in files:
            continue
        key = rel + "/"  # a folder object: no bytes, its metadata in <folder>/.json
        names = _names_or_none(bucket, key, folder)
        if names is None:
            continue
        try:
            old = json.loads((Path(folder) / ".json").read_text())
        except ValueError:
            old = {}
        target = data_dst.joinpath(*names)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(0o644)
        st = target.stat()
        meta_file = meta_dst.joinpath(*names[:-1], names[-1] + ".json")
        meta_file.parent.mkdir(parents=True, exist_ok=True)
        meta_file.write_text(
            json.dumps(
                {
                    "size": 0,
                    "mtime_ns": st.st_mtime_ns,
                    "etag": hashlib.md5(b"").hexdigest(),
                    "content_type": old.get("content_type"),
                    "metadata": old.get("metadata", {}),
                }
            )
        )
        moved += 1
    return moved


def _names_or_none(bucket: str, key: str, path: str) -> list[str] | None:
    if not stat.S_ISREG(os.lstat(path).st_mode) and not os.path.isdir(path):
        log.warning("Object store: %s is not a regular file; left out of bucket %r", path, bucket)
        return None
    try:
        validate_key(key)
    except InvalidObjectKey as exc:
        log.warning("Object store: %s left out of bucket %r: %s", path, bucket, exc.message)
        return None
    return key_names(key)


def _place(source: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # a filesystem without hard links: a copy, with the same mtime
        shutil.copy2(source, target)
