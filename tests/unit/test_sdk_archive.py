"""What the SDK ships as a job's code."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from shipyard.sdk._training import _source_archive


def _names(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_a_source_dir_goes_without_hidden_files_caches_and_venvs(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.py").write_text("X = 1\n")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    for skipped in (".git/HEAD", ".ipynb_checkpoints/a.py", "__pycache__/x.pyc", "venv/pyvenv.cfg", ".env"):
        (tmp_path / skipped).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / skipped).write_text("")
    archive = _source_archive(tmp_path / "train.py", tmp_path, ["tabulate==0.9.0"])
    files = _names(archive)
    assert sorted(files) == ["lib/util.py", "requirements.txt", "train.py"]
    assert files["requirements.txt"] == b"numpy\ntabulate==0.9.0\n"  # added to, not replaced
    assert archive[4:8] == b"\0\0\0\0"  # no time in the gzip header: the same code, the same bytes
    assert _source_archive(tmp_path / "train.py", tmp_path, ["tabulate==0.9.0"]) == archive


def test_without_a_source_dir_the_script_goes_alone(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "big.csv").write_text("1,2\n" * 1000)
    assert sorted(_names(_source_archive(tmp_path / "train.py", None, ["xgboost"]))) == [
        "requirements.txt",
        "train.py",
    ]
