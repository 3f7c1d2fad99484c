"""tar.gz packing and safe extraction of untrusted archives (source dirs, model artifacts)."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Protocol

from shipyard.errors import ValidationError


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def pack_directory(source: Path, fileobj: IO[bytes]) -> int:
    """Write ``source``'s contents as a gzipped tar stream to ``fileobj``; returns the file count.

    Members are named relative to ``source`` (``model.pth``, not ``/opt/ml/model/model.pth``), as
    SageMaker packs model.tar.gz. Symlinks are stored as links, never followed.
    """
    count = 0
    with tarfile.open(fileobj=fileobj, mode="w|gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
            count += not path.is_dir()
    return count


def extract_tar(fileobj: Readable, destination: Path, *, what: str) -> int:
    """Extract a (possibly gzipped) tar stream into ``destination``, refusing anything unsafe.

    Refused: absolute member names, ``..`` components, links pointing outside ``destination``,
    device files and FIFOs. Raises ValidationError naming the member and ``what`` the archive is.
    """
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    count = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:  # type: ignore[call-overload]
            for member in tar:
                _check_member(member, root, what)
                tar.extract(member, root, filter="data")
                count += member.isfile()
    except tarfile.TarError as exc:
        raise ValidationError(f"{what} is not a valid tar archive: {exc}", field=what) from None
    return count


def _check_member(member: tarfile.TarInfo, root: Path, what: str) -> None:
    name = member.name
    if name.startswith("/") or os.path.isabs(name) or ".." in Path(name).parts:
        raise ValidationError(
            f"{what}: archive member {name!r} would be written outside its folder", field=what, value=name
        )
    if member.isdev() or member.isfifo():
        raise ValidationError(f"{what}: archive member {name!r} is a device or FIFO", field=what, value=name)
    if member.issym() or member.islnk():
        target = (root / Path(name).parent / member.linkname) if member.issym() else root / member.linkname
        if not str(target.resolve()).startswith(str(root)):
            raise ValidationError(
                f"{what}: archive member {name!r} links to {member.linkname!r}, outside its folder",
                field=what,
                value=name,
            )


class ChunkReader:
    """A read()-able file over an iterable of byte chunks, for streaming tar extraction."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
