"""The local object store keeps every key S3 allows, each in its own file inside its bucket.

Keys that are "folders" of other keys (``a``, ``a/``, ``a/b``), ``..`` segments, ``%`` and long runs
without ``/`` all coexist; listings come out in S3's order whatever the prefix, delimiter and start;
a data dir of the first layout is read after one migration on open, which a crash cannot tear.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard import errors
from shipyard.storage import LocalObjectStore, UploadSweeper
from shipyard.storage._layout import decode, key_names

TRICKY = [
    "model.json/w",
    "model.json",
    "x",
    "x/",
    "a",
    "a/",
    "a/b",
    "a//b",
    "a/../b",
    "../../etc/passwd",
    "/abs",
    ".",
    "..",
    "%",
    "%2F",
    "%2F%",
    "a%+",
    "tab\there",
    "nul\x00",
    "~/.ssh",
    "é/ключ",
    "😀" * 256,  # 1,024 bytes, no "/"
    "y" * 241 + "/",
    "y" * 241 + "/z",
    "y" * 241 + "z",
    "y" * 1024,
]


def _s3_list(
    keys: list[str], prefix: str = "", delimiter: str = "", start_after: str = ""
) -> tuple[list[str], list[str]]:
    """What S3 answers, computed the plain way: (keys, common prefixes)."""
    objects: list[str] = []
    prefixes: list[str] = []
    for key in sorted(set(keys)):
        if not key.startswith(prefix) or key <= start_after:
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            objects.append(key)
        else:
            common = key[: cut + len(delimiter)]
            if common > start_after and common not in prefixes:
                prefixes.append(common)
    return objects, prefixes


def _listed(store: LocalObjectStore, bucket: str, **kwargs: str) -> tuple[list[str], list[str]]:
    page = store.list_objects(bucket, **kwargs)  # type: ignore[arg-type]
    assert not page.is_truncated
    return [o.key for o in page.objects], page.common_prefixes


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    store = LocalObjectStore(tmp_path / "objects")
    store.create_bucket("data")
    return store


def test_every_name_is_short_distinct_and_never_a_path_trick() -> None:
    paths = set()
    for key in TRICKY:
        names = key_names(key)
        assert all(0 < len(n.encode()) <= 255 - len(".json") for n in names), key
        assert all("/" not in n and n not in (".", "..") for n in names), key
        assert "/".join(names) not in paths, key
        paths.add("/".join(names))
        entries = [decode(n) for n in names]
        assert all(e is not None for e in entries)
        assert "".join(e.span for e in entries if e is not None) == key
    # a data file and the folder of the keys below it never share a name
    assert key_names("model.json") == ["model.json"]
    assert key_names("model.json/w") == ["model.json%2F", "w"]


def test_tricky_keys_side_by_side(store: LocalObjectStore, tmp_path: Path) -> None:
    for key in TRICKY:
        store.put_object("data", key, key.encode(), metadata={"k": "v"})
    bucket_dir = tmp_path / "objects/v2/buckets/data"
    for key in TRICKY:
        assert store.get_object_bytes("data", key) == key.encode()
        info = store.head_object("data", key)
        assert (info.size, info.etag, dict(info.metadata)) == (
            len(key.encode()),
            hashlib.md5(key.encode()).hexdigest(),
            {"k": "v"},
        )
        path = store.local_path("data", key)
        assert path is not None and bucket_dir in path.parents and path.read_bytes() == key.encode()
    assert _listed(store, "data") == (sorted(TRICKY), [])
    for prefix, delimiter in [("", "/"), ("a/", "/"), ("a", "/"), ("y", "/"), ("", "."), ("x", "/")]:
        assert _listed(store, "data", prefix=prefix, delimiter=delimiter) == _s3_list(
            TRICKY, prefix, delimiter
        )
    store.copy_object("data", "model.json", "data", "model.json/w/copy")
    assert store.get_object_bytes("data", "model.json/w/copy") == b"model.json"
    for key in [*TRICKY, "model.json/w/copy"]:
        store.delete_object("data", key)
    assert not [p for p in bucket_dir.rglob("*")]  # every folder pruned
    assert not list((tmp_path / "objects/v2/meta/data").rglob("*"))
    store.delete_bucket("data")


def test_overwriting_a_key_never_touches_its_neighbours(store: LocalObjectStore) -> None:
    store.put_object("data", "x", b"1")
    store.put_object("data", "x/", b"")
    store.put_object("data", "x/y", b"2")
    store.put_object("data", "x", b"3")
    store.delete_object("data", "x/")
    assert store.get_object_bytes("data", "x") == b"3"
    assert store.get_object_bytes("data", "x/y") == b"2"
    with pytest.raises(errors.NoSuchKey):
        store.head_object("data", "x/")
    store.delete_object("data", "x")
    assert _listed(store, "data") == (["x/y"], [])


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(
        st.text(alphabet="ab/.%-0", min_size=1, max_size=8).filter(lambda k: k.strip()),
        min_size=1,
        max_size=25,
        unique=True,
    ),
    prefix=st.text(alphabet="ab/", max_size=3),
    delimiter=st.sampled_from(["", "/", "b"]),
    start_after=st.text(alphabet="ab/.", max_size=4),
    page_size=st.integers(1, 4),
)
def test_listing_pages_are_s3s_answer(
    tmp_path_factory: pytest.TempPathFactory,
    keys: list[str],
    prefix: str,
    delimiter: str,
    start_after: str,
    page_size: int,
) -> None:
    store = LocalObjectStore(tmp_path_factory.mktemp("hyp") / "objects")
    store.create_bucket("data")
    for key in keys:
        store.put_object("data", key, b"")
    assert _listed(store, "data", prefix=prefix, delimiter=delimiter, start_after=start_after) == _s3_list(
        keys, prefix, delimiter, start_after
    )
    objects: list[str] = []
    prefixes: list[str] = []
    after = start_after
    while True:
        page = store.list_objects(
            "data", prefix=prefix, delimiter=delimiter, start_after=after, max_keys=page_size
        )
        objects += [o.key for o in page.objects]
        prefixes += page.common_prefixes
        if not page.is_truncated:
            break
        assert page.next_start_after is not None and page.next_start_after > after
        after = page.next_start_after
    assert (objects, prefixes) == _s3_list(keys, prefix, delimiter, start_after)


def test_files_put_in_by_hand_in_other_shapes_are_passed_over(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    bucket_dir = tmp_path / "objects/v2/buckets/data"
    store.put_object("data", "kept", b"1")
    (bucket_dir / "not-canonical%41").write_bytes(b"?")  # "A" is never written escaped
    (bucket_dir / "folder-as-file%2F").write_bytes(b"?")
    (bucket_dir / "empty%2F").mkdir()  # a crash's leftover
    (bucket_dir / "link").symlink_to("/etc/passwd")
    assert _listed(store, "data") == (["kept"], [])
    assert _listed(store, "data", delimiter="/") == (["kept"], [])


# -- the first layout, migrated -------------------------------------------------------------
def _first_layout(root: Path) -> None:
    """A data dir as the first layout wrote it: keys as paths, metadata beside, a folder object."""
    data, meta = root / "buckets/data", root / "meta/data"
    (data / "train").mkdir(parents=True)
    (data / "train/part-0.csv").write_bytes(b"1,2\n")
    (data / "top.txt").write_bytes(b"top")
    (data / "folder").mkdir()
    (root / "buckets/empty").mkdir()
    (root / "meta/empty").mkdir(parents=True)
    st_part = (data / "train/part-0.csv").stat()
    (meta / "train").mkdir(parents=True)
    (meta / "train/part-0.csv.json").write_text(
        json.dumps(
            {
                "size": st_part.st_size,
                "mtime_ns": st_part.st_mtime_ns,
                "etag": hashlib.md5(b"1,2\n").hexdigest(),
                "content_type": "text/csv",
                "metadata": {"owner": "ada"},
            }
        )
    )
    (meta / "folder").mkdir()
    (meta / "folder/.json").write_text(json.dumps({"mtime_ns": 1, "content_type": "application/x-directory"}))
    (root / "bucketinfo").mkdir()
    (root / "bucketinfo/data.json").write_text(json.dumps({"created": "2024-01-02T03:04:05+00:00"}))


def _check_migrated(root: Path) -> None:
    store = LocalObjectStore(root)
    assert [b.name for b in store.list_buckets()] == ["data", "empty"]
    assert store.head_bucket("data").created == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert [o.key for o in store.list_objects("data").objects] == ["folder/", "top.txt", "train/part-0.csv"]
    part = store.head_object("data", "train/part-0.csv")
    assert (part.content_type, dict(part.metadata)) == ("text/csv", {"owner": "ada"})
    assert store.head_object("data", "folder/").content_type == "application/x-directory"
    assert store.get_object_bytes("data", "top.txt") == b"top"
    assert not (root / "buckets").exists() and not (root / "meta").exists()
    assert not (root / "migrating").exists()
    store.put_object("data", "train", b"now a key beside its folder")  # the first layout could not


def test_a_first_layout_data_dir_is_migrated_on_open(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    _first_layout(root)
    before = os.stat(root / "buckets/data/train/part-0.csv").st_ino
    _check_migrated(root)
    path = LocalObjectStore(root).local_path("data", "train/part-0.csv")
    assert path is not None and path.stat().st_ino == before  # linked, not copied


def test_a_crash_before_the_switch_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    _first_layout(root)
    (root / "migrating/buckets/data").mkdir(parents=True)  # a half-built tree
    (root / "migrating/buckets/data/half").write_bytes(b"?")
    _check_migrated(root)
    assert LocalObjectStore(root).list_objects("data").objects[0].key == "folder/"


def test_a_crash_after_the_switch_only_finishes_the_cleanup(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    _first_layout(root)
    LocalObjectStore(root)
    _first_layout_again = root / "buckets/data"
    _first_layout_again.mkdir(parents=True)  # the old folders still there, as if the removal crashed
    (_first_layout_again / "stale").write_bytes(b"gone")
    store = LocalObjectStore(root)
    assert "stale" not in [o.key for o in store.list_objects("data").objects]
    assert not (root / "buckets").exists()


# -- uploads a crash left open ----------------------------------------------------------------
def test_stale_uploads_are_listed_then_aborted_after_their_age(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    old = store.create_multipart_upload("data", "a/big.bin")
    fresh = store.create_multipart_upload("data", "b.bin")
    with store.open_part_writer("data", "a/big.bin", old.upload_id, 1) as writer:
        writer.write(b"part")
        writer.commit()
    orphan = tmp_path / "objects/uploads/orphan-without-upload-json"
    orphan.mkdir()
    assert [u.key for u in store.list_multipart_uploads("data")] == ["a/big.bin", "b.bin"]
    assert [u.key for u in store.list_multipart_uploads("data", prefix="a/")] == ["a/big.bin"]
    later = old.initiated + dt.timedelta(days=7, seconds=1)
    assert store.abort_stale_uploads(dt.timedelta(days=8), now=later) == 0
    os.utime(orphan, (0, 0))
    fresh_json = tmp_path / "objects/uploads" / fresh.upload_id / "upload.json"
    doc = json.loads(fresh_json.read_text())
    doc["initiated"] = (old.initiated + dt.timedelta(hours=1)).isoformat()
    fresh_json.write_text(json.dumps(doc))
    assert store.abort_stale_uploads(dt.timedelta(days=7), now=later) == 2  # the old one, the orphan
    assert [u.upload_id for u in store.list_multipart_uploads("data")] == [fresh.upload_id]
    assert not orphan.exists()
    with pytest.raises(errors.NoSuchUpload):
        store.list_parts("data", "a/big.bin", old.upload_id)


def test_the_sweeper_runs_at_once_then_once_an_interval(store: LocalObjectStore) -> None:
    now = [1000.0]
    upload = store.create_multipart_upload("data", "k")
    sweeper = UploadSweeper(store, 0, clock=lambda: now[0])
    sweeper()  # 0 hours: never
    assert store.list_multipart_uploads("data")
    calls: list[dt.timedelta] = []

    class Counting(LocalObjectStore):
        def abort_stale_uploads(self, max_age: dt.timedelta, *, now: dt.datetime | None = None) -> int:
            calls.append(max_age)
            return 0

    counting = Counting(store.root)
    sweeper = UploadSweeper(counting, 168, every_seconds=3600, clock=lambda: now[0])
    sweeper()
    now[0] += 10
    sweeper()
    now[0] += 3600
    sweeper()
    assert calls == [dt.timedelta(days=7)] * 2
    assert store.list_multipart_uploads("data")[0].upload_id == upload.upload_id
