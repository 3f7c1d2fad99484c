"""The ObjectStore contract, run against every implementation.

``local`` is the default store on a temporary folder; ``s3`` is S3ObjectStore talking to a real
Shipyard server over its S3 API (so this also exercises that API with the store's own client).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard import errors
from shipyard.server import ServerProcess
from shipyard.storage import MIN_PART_SIZE, LocalObjectStore, ObjectInfo, ObjectStore
from shipyard.storage._s3 import S3ObjectStore


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
    else:
        server: ServerProcess = request.getfixturevalue("server")
        s3 = S3ObjectStore(server.url, "key", "secret")
        yield s3
        s3.close()


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"
    store.create_bucket(name)
    return name


def test_put_get_head_roundtrip(store: ObjectStore, bucket: str) -> None:
    data = b"hello shipyard" * 1000
    info = store.put_object(
        bucket, "dir/hello.txt", data, content_type="text/plain", metadata={"owner": "ada"}
    )
    assert info.etag == hashlib.md5(data).hexdigest()
    head = store.head_object(bucket, "dir/hello.txt")
    assert (head.size, head.etag, head.content_type, dict(head.metadata)) == (
        len(data),
        info.etag,
        "text/plain",
        {"owner": "ada"},
    )
    assert store.get_object_bytes(bucket, "dir/hello.txt") == data


def test_ranges(store: ObjectStore, bucket: str) -> None:
    store.put_object(bucket, "r", bytes(range(256)))
    for rng, expected in [
        ((0, 9), bytes(range(10))),
        ((250, None), bytes(range(250, 256))),
        ((None, 3), bytes([253, 254, 255])),
        ((200, 10_000), bytes(range(200, 256))),
    ]:
        _, resolved, chunks = store.read_object(bucket, "r", rng)
        assert b"".join(chunks) == expected
        assert resolved is not None and resolved.length == len(expected)
    with pytest.raises(errors.InvalidRange):
        store.read_object(bucket, "r", (300, None))


def test_missing_things_raise_their_own_errors(store: ObjectStore, bucket: str) -> None:
    with pytest.raises(errors.NoSuchKey):
        store.head_object(bucket, "nope")
    with pytest.raises(errors.NoSuchKey):
        store.read_object(bucket, "nope")
    with pytest.raises(errors.NoSuchBucket):
        store.head_object("no-such-bucket-here", "k")
    with pytest.raises(errors.NoSuchBucket):
        store.put_object("no-such-bucket-here", "k", b"x")
    store.delete_object(bucket, "nope")  # deleting a missing key succeeds, as in S3


def test_bucket_lifecycle(store: ObjectStore) -> None:
    name = f"life-{uuid.uuid4().hex[:8]}"
    store.create_bucket(name)
    assert name in [b.name for b in store.list_buckets()]
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        store.create_bucket(name)
    store.put_object(name, "k", b"x")
    with pytest.raises(errors.BucketNotEmpty):
        store.delete_bucket(name)
    store.delete_object(name, "k")
    store.delete_bucket(name)
    with pytest.raises(errors.NoSuchBucket):
        store.head_bucket(name)


def test_listing_order_prefix_delimiter_and_pages(store: ObjectStore, bucket: str) -> None:
    keys = ["a-b", "a/x", "a/y/z", "a0", "data/", "data/t.csv", "zz", "é"]
    for key in keys:
        store.put_object(bucket, key, b"")
    page = store.list_objects(bucket)
    assert [o.key for o in page.objects] == sorted(keys, key=lambda k: k.encode())
    page = store.list_objects(bucket, delimiter="/")
    assert [o.key for o in page.objects] == ["a-b", "a0", "zz", "é"]
    assert page.common_prefixes == ["a/", "data/"]
    page = store.list_objects(bucket, prefix="a/", delimiter="/")
    assert ([o.key for o in page.objects], page.common_prefixes) == (["a/x"], ["a/y/"])
    page = store.list_objects(bucket, delimiter="-")
    assert page.common_prefixes == ["a-"]
    seen, start = [], ""
    while True:
        page = store.list_objects(bucket, max_keys=3, start_after=start)
        seen += [o.key for o in page.objects]
        if not page.is_truncated:
            break
        assert page.next_start_after
        start = page.next_start_after
    assert seen == sorted(keys, key=lambda k: k.encode())


def test_copy_keeps_or_replaces_metadata(store: ObjectStore, bucket: str) -> None:
    store.put_object(bucket, "src", b"payload", content_type="text/csv", metadata={"a": "1"})
    copied = store.copy_object(bucket, "src", bucket, "dst")
    assert (copied.content_type, dict(copied.metadata)) == ("text/csv", {"a": "1"})
    replaced = store.copy_object(
        bucket, "src", bucket, "dst2", content_type="text/plain", metadata={"b": "2"}
    )
    assert (replaced.content_type, dict(replaced.metadata)) == ("text/plain", {"b": "2"})
    assert store.get_object_bytes(bucket, "dst2") == b"payload"


def test_multipart_upload(store: ObjectStore, bucket: str) -> None:
    parts_data = [b"a" * MIN_PART_SIZE, b"b" * MIN_PART_SIZE, b"tail"]
    upload = store.create_multipart_upload(bucket, "big.bin", content_type="application/x-test")
    etags = []
    for number, data in enumerate(parts_data, start=1):
        with store.open_part_writer(bucket, "big.bin", upload.upload_id, number) as writer:
            writer.write(data)
            etags.append((number, writer.commit().etag))
    assert [p.part_number for p in store.list_parts(bucket, "big.bin", upload.upload_id)] == [1, 2, 3]
    with pytest.raises(errors.InvalidPartOrder):
        store.complete_multipart_upload(bucket, "big.bin", upload.upload_id, list(reversed(etags)))
    with pytest.raises(errors.InvalidPart):
        store.complete_multipart_upload(bucket, "big.bin", upload.upload_id, [(1, "0" * 32)])
    info = store.complete_multipart_upload(bucket, "big.bin", upload.upload_id, etags)
    assert info.etag.endswith("-3")
    assert store.get_object_bytes(bucket, "big.bin") == b"".join(parts_data)
    assert store.head_object(bucket, "big.bin").content_type == "application/x-test"
    with pytest.raises(errors.NoSuchUpload):
        store.list_parts(bucket, "big.bin", upload.upload_id)


def test_small_parts_are_refused(store: ObjectStore, bucket: str) -> None:
    upload = store.create_multipart_upload(bucket, "small")
    etags = []
    for number in (1, 2):
        with store.open_part_writer(bucket, "small", upload.upload_id, number) as writer:
            writer.write(b"tiny")
            etags.append((number, writer.commit().etag))
    with pytest.raises(errors.EntityTooSmall):
        store.complete_multipart_upload(bucket, "small", upload.upload_id, etags)
    store.abort_multipart_upload(bucket, "small", upload.upload_id)
    with pytest.raises(errors.NoSuchUpload):
        store.abort_multipart_upload(bucket, "small", upload.upload_id)


def test_aborted_writer_leaves_nothing(store: ObjectStore, bucket: str) -> None:
    with store.open_writer(bucket, "ghost") as writer:
        writer.write(b"half an object")
        # leaving the block without commit aborts
    with pytest.raises(errors.NoSuchKey):
        store.head_object(bucket, "ghost")


def test_bad_md5_is_refused_and_nothing_is_stored(store: ObjectStore, bucket: str) -> None:
    with pytest.raises(errors.BadDigest), store.open_writer(bucket, "k", expected_md5=b"\0" * 16) as writer:
        writer.write(b"data")
        writer.commit()
    with pytest.raises(errors.NoSuchKey):
        store.head_object(bucket, "k")


def test_traversal_keys_are_text_kept_inside_the_bucket(
    store: ObjectStore, bucket: str, tmp_path: Path
) -> None:
    """S3 stores ``../escape`` as the text it is: so does every store, and nothing leaves the bucket."""
    keys = ["../escape", "a/../../escape", "/etc/escape", "a/./b", "a//b", "..", "."]
    for key in keys:
        store.put_object(bucket, key, key.encode())
    for key in keys:
        assert store.get_object_bytes(bucket, key) == key.encode()
    assert [o.key for o in store.list_objects(bucket).objects] == sorted(keys)
    if isinstance(store, LocalObjectStore):
        inside = tmp_path / "objects/v2/buckets" / bucket
        for key in keys:
            path = store.local_path(bucket, key)
            assert path is not None and inside in path.parents
    objects = tmp_path / "objects/v2"
    outside = [p for p in tmp_path.rglob("*escape*") if len(p.relative_to(objects).parts) < 3]
    assert not outside  # every file is below v2/buckets/<bucket>/ or v2/meta/<bucket>/


# -- local-store specifics ----------------------------------------------------------------------
def test_local_store_keeps_plain_files_and_keys_that_begin_others(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.create_bucket("data")
    store.put_object("data", "train/part-0.csv", b"1,2\n")
    path = store.local_path("data", "train/part-0.csv")
    assert path is not None and path.read_bytes() == b"1,2\n"
    store.put_object("data", "train/part-0.csv/x", b"below")
    store.put_object("data", "train", b"above")
    assert store.get_object_bytes("data", "train/part-0.csv") == b"1,2\n"
    assert [o.key for o in store.list_objects("data").objects] == [
        "train",
        "train/part-0.csv",
        "train/part-0.csv/x",
    ]


def test_local_store_adopts_files_put_in_by_hand(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.create_bucket("data")
    (tmp_path / "objects/v2/buckets/data/sub%2F").mkdir(parents=True)  # the folder of "sub/"
    (tmp_path / "objects/v2/buckets/data/sub%2F/manual.csv").write_bytes(b"x,y\n")
    info = store.head_object("data", "sub/manual.csv")
    assert info.etag == hashlib.md5(b"x,y\n").hexdigest()
    assert [o.key for o in store.list_objects("data").objects] == ["sub/manual.csv"]


def test_local_store_metadata_follows_the_bytes_after_a_torn_write(tmp_path: Path) -> None:
    """A crash between the data rename and the metadata rename must not mis-describe the object."""
    store = LocalObjectStore(tmp_path / "objects")
    store.create_bucket("data")
    store.put_object("data", "k", b"old")
    # Simulate the crash: new bytes in place, old metadata left behind.
    (tmp_path / "objects/v2/buckets/data/k").write_bytes(b"newer bytes")
    info: ObjectInfo = store.head_object("data", "k")
    assert (info.size, info.etag) == (11, hashlib.md5(b"newer bytes").hexdigest())
