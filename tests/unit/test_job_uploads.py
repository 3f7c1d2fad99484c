"""What a job made is uploaded without following it out of its folder (checkpoints, processing
outputs, the failure file), and input keys or manifest entries cannot place files outside theirs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from shipyard.runtime.agent._inputs import inside
from shipyard.runtime.agent._io import JobInputError
from shipyard.runtime.agent._processing import manifest_entries
from shipyard.runtime.agent._sync import FolderSync
from shipyard.storage import LocalObjectStore
from shipyard.storage._nofollow import read_inside

SECRET = b"HOST-SECRET"


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host" / "secret"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def _planted(ml: Path, host_file: Path) -> Path:
    """``ml/checkpoints`` as a hostile job leaves it: links out, a hard link, a FIFO, a real file."""
    folder = ml / "checkpoints"
    (folder / "sub").mkdir(parents=True)
    (folder / "step-1.pt").write_bytes(b"weights")
    (folder / "sub" / "state.json").write_bytes(b"{}")
    (folder / "leak").symlink_to(host_file)
    (folder / "hostdir").symlink_to(host_file.parent)
    os.link(host_file, folder / "hard")
    os.mkfifo(folder / "pipe")
    return folder


def _sync(
    tmp_path: Path, folder: Path, lines: list[str], **kw: object
) -> tuple[LocalObjectStore, FolderSync]:
    store = LocalObjectStore(tmp_path / "objects")
    store.create_bucket("bkt")
    sync = FolderSync(
        store, lines.append, folder, "s3://bkt/ckpt", 0, "checkpoint", shown="/opt/ml/checkpoints", **kw
    )  # type: ignore[arg-type]
    return store, sync


def _objects(store: LocalObjectStore) -> dict[str, bytes]:
    page = store.list_objects("bkt", prefix="")
    return {o.key: b"".join(store.read_object("bkt", o.key)[2]) for o in page.objects}


def test_folder_sync_uploads_the_jobs_own_files_and_names_each_skipped_one_once(
    tmp_path: Path, host_file: Path
) -> None:
    ml = tmp_path / "ml"
    folder = _planted(ml, host_file)
    lines: list[str] = []
    store, sync = _sync(tmp_path, folder, lines, within=ml)
    assert sync.sync() == 2
    assert sync.sync() == 0  # nothing changed: nothing uploaded, nothing said again
    objects = _objects(store)
    assert objects == {"ckpt/step-1.pt": b"weights", "ckpt/sub/state.json": b"{}"}
    assert lines == [
        "Shipyard: skipped /opt/ml/checkpoints/hard: a hard link (2 names; the others may be outside "
        "the job's folder)",
        "Shipyard: skipped /opt/ml/checkpoints/hostdir: a symbolic link",
        "Shipyard: skipped /opt/ml/checkpoints/leak: a symbolic link",
        "Shipyard: skipped /opt/ml/checkpoints/pipe: a FIFO",
    ]


def test_folder_sync_does_not_follow_a_folder_on_the_way_swapped_for_a_link(
    tmp_path: Path, host_file: Path
) -> None:
    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "processing").symlink_to(host_file.parent)  # the job replaced a folder above the output
    lines: list[str] = []
    store, sync = _sync(tmp_path, ml / "processing", lines, within=ml)
    assert sync.sync() == 0
    assert _objects(store) == {}
    assert lines == ["Shipyard: skipped /opt/ml/checkpoints/.: a symbolic link, or under one"]


def test_the_failure_file_is_not_read_through_a_link(tmp_path: Path, host_file: Path) -> None:
    ml = tmp_path / "ml"
    (ml / "output").mkdir(parents=True)
    (ml / "output" / "failure").symlink_to(host_file)
    assert read_inside(ml, "output/failure", 1024) is None
    (ml / "output" / "failure").unlink()
    (ml / "output" / "failure").write_text("my own reason")
    assert read_inside(ml, "output/failure", 1024) == b"my own reason"
    (ml / "output" / "failure").unlink()
    (ml / "output").rename(ml / "real-output")
    (ml / "output").symlink_to(host_file.parent)
    (host_file.parent / "failure").write_bytes(SECRET)
    assert read_inside(ml, "output/failure", 1024) is None


@pytest.mark.parametrize("entry", ["../../etc/passwd", "/etc/passwd", "a/../../x", ""])
def test_a_manifest_entry_outside_its_prefix_is_refused_naming_it(entry: str) -> None:
    body = json.dumps([{"prefix": "s3://data/in/"}, "ok.csv", entry]).encode()
    with pytest.raises(JobInputError) as caught:
        manifest_entries(body, "s3://data/manifest.json")
    assert str(caught.value).startswith(
        f"ManifestFile s3://data/manifest.json: entry {entry!r} is not a path"
    )


@pytest.mark.parametrize(
    "body", [b"not json", b"{}", b"[]", b'[{"prefix": 3}]', b'[{"prefix": "s3://b/"}, 7]']
)
def test_a_malformed_manifest_is_refused_naming_it(body: bytes) -> None:
    with pytest.raises(JobInputError, match=re.escape("ManifestFile s3://data/manifest.json")):
        manifest_entries(body, "s3://data/manifest.json")


def test_a_good_manifest_gives_its_keys() -> None:
    body = json.dumps([{"prefix": "s3://data/in/"}, "a.csv", "sub/b.csv"]).encode()
    assert manifest_entries(body, "s3://data/m.json") == ("data", "in/", ["a.csv", "sub/b.csv"])


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/passwd", ""])
def test_an_object_key_that_would_leave_its_input_folder_is_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(
        JobInputError, match=re.escape(f"channel 'train': {relative!r} would be written outside")
    ):
        inside(tmp_path, relative, "channel 'train'")
    assert inside(tmp_path, "sub/a.csv", "channel 'train'") == tmp_path / "sub" / "a.csv"
