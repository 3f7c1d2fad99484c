import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.runtime._sandbox import hand_over, sandbox_command


def test_kept_environment_is_bound_back_after_the_private_tmp_and_hidden_data_dir(tmp_path: Path) -> None:
    venv = tmp_path / "clone" / ".venv"
    args = sandbox_command(
        [str(venv / "bin" / "python"), "train.py"],
        ml_dir=tmp_path / "ml",
        host="algo-2",
        hosts_file=tmp_path / "hosts",
        hide=[tmp_path / "data"],
        keep=[venv],
        cwd="/opt/ml/code",
    )
    joined = " ".join(args)
    assert joined.index("--tmpfs /tmp") < joined.index(f"--tmpfs {tmp_path / 'data'}")
    assert joined.index(f"--tmpfs {tmp_path / 'data'}") < joined.index(f"--ro-bind {venv} {venv}")
    assert joined.index(f"--ro-bind {venv} {venv}") < joined.index(f"--bind {tmp_path / 'ml'} /opt/ml")
    assert "--hostname algo-2" in joined and "--unshare-pid" in args
    assert args[-2:] == [str(venv / "bin" / "python"), "train.py"]


def test_as_root_the_command_drops_to_its_own_uid_with_no_capability_left(tmp_path: Path) -> None:
    args = sandbox_command(
        ["python", "train.py"],
        ml_dir=tmp_path / "ml",
        host="algo-1",
        hosts_file=tmp_path / "hosts",
        hide=[tmp_path / "data"],
        keep=[],
        cwd="/opt/ml/code",
        run_as=2_000_000_123,
    )
    separator = args.index("--")
    bwrap, inside = args[:separator], args[separator + 1 :]
    # bwrap keeps only what setpriv needs to change uid and clear the bounding set...
    assert bwrap[bwrap.index("--cap-drop") + 1] == "ALL"
    kept = [bwrap[i + 1] for i, arg in enumerate(bwrap) if arg == "--cap-add"]
    assert sorted(kept) == ["CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID"]
    assert "--new-session" in bwrap and "--die-with-parent" in bwrap
    # ...and setpriv leaves none before the job's command starts.
    assert inside[:6] == [
        "setpriv",
        "--reuid=2000000123",
        "--regid=2000000123",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]
    assert inside[-2:] == ["python", "train.py"]


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A folder not under /tmp (which the sandbox hides whole)."""
    folder = Path(tempfile.mkdtemp(dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_a_kept_folder_under_a_closed_one_is_reached_through_open_folders(
    tmp_path: Path, outside_tmp: Path
) -> None:
    home = outside_tmp / "root"
    python = home / ".pyenv" / "versions" / "3.11"
    python.mkdir(parents=True)
    home.chmod(0o700)
    args = sandbox_command(
        ["python"],
        ml_dir=tmp_path / "ml",
        host="algo-1",
        hosts_file=tmp_path / "hosts",
        hide=[],
        keep=[python],
        cwd="/",
        run_as=2_000_000_001,
    )
    joined = " ".join(args)
    # The closed folder becomes a tmpfs, the way down is made 0755 in it, then the folder is bound.
    assert f"--tmpfs {home} " in joined
    assert f"--perms 0755 --dir {home / '.pyenv'} --perms 0755 --dir {home / '.pyenv' / 'versions'}" in joined
    assert joined.index(f"--tmpfs {home} ") < joined.index(f"--ro-bind {python} {python}")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives files away")
def test_hand_over_gives_the_folder_but_not_linked_objects_and_follows_no_link(tmp_path: Path) -> None:
    ml = tmp_path / "ml"
    (ml / "input" / "data" / "train").mkdir(parents=True)
    (ml / "input" / "data" / "train" / "a.csv").write_text("1")  # a copy: the job's own
    stored = tmp_path / "store-object"
    stored.write_text("big")
    os.link(stored, ml / "input" / "data" / "train" / "big.bin")  # a large object, linked
    (ml / "model").mkdir()
    outside = tmp_path / "host-file"
    outside.write_text("host")
    (ml / "model" / "leak").symlink_to(outside)
    hand_over(ml, 2_000_000_077)
    assert ml.stat().st_uid == 2_000_000_077 and (ml / "model").stat().st_uid == 2_000_000_077
    assert (ml / "model" / "leak").lstat().st_uid == 2_000_000_077
    assert outside.stat().st_uid == os.getuid(), "the link's target is not the job's"
    assert (ml / "input" / "data" / "train" / "a.csv").stat().st_uid == 2_000_000_077
    assert (ml / "input" / "data" / "train").stat().st_uid == 2_000_000_077
    assert stored.stat().st_uid == os.getuid(), "a stored object stays the store's"
