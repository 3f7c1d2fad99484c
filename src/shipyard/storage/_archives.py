"""tar.gz packing of a job's folders, and extraction of untrusted archives that cannot escape.

Extraction (source dirs, model artifacts, a remote function's output) refuses, naming the member
and the archive: names that are absolute, have a ``..`` part, a backslash or a NUL, or are longer
than the filesystem allows; devices, FIFOs and anything that is not a file, folder or link;
setuid, setgid and sticky bits; symbolic links that are absolute or whose target, followed as the
kernel would follow it, leaves the folder (through ``..``, or through another link); any member
that would be written through a link (a link and then ``link/file``, a folder swapped for a link);
a link that would redirect a link made earlier; and every hard link except one to a regular file
extracted earlier from the same archive, which is written as a copy of it. tarfile's ``data``
filter is applied as well. Every member is written relative to an open descriptor of its folder,
one component at a time with ``O_NOFOLLOW``, so nothing can be written outside the target, not
even partially, whatever is already on disk.

Packing never follows what a job planted: symbolic links, hard links and special files are
skipped (see :mod:`shipyard.storage._nofollow`) and reported.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import stat
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, NoReturn, Protocol

from shipyard.errors import ValidationError
from shipyard.storage._nofollow import Skipped, describe, walk_folder

NAME_MAX = 255  # bytes in one path component
PATH_MAX = 4095  # bytes in a member name or a link target
_HIGH_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1024 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def pack_directory(
    source: Path, fileobj: IO[bytes], *, skipped: Skipped | None = None, within: Path | None = None
) -> int:
    """Write ``source``'s contents as a gzipped tar stream to ``fileobj``; returns the file count.

    Members are named relative to ``source`` (``model.pth``, not ``/opt/ml/model/model.pth``), as
    SageMaker packs model.tar.gz. Symbolic links, hard links and special files are not packed:
    each is reported to ``skipped`` (its relative path, and why); nor is anything if ``source``
    is, or below ``within`` goes through, a link.
    """
    count = 0
    with tarfile.open(fileobj=fileobj, mode="w|gz") as tar:
        for entry in walk_folder(source, skipped or (lambda path, why: None), within=within):
            if entry.is_dir:
                info = tarfile.TarInfo(entry.relative)
                info.type = tarfile.DIRTYPE
                info.mode = stat.S_IMODE(entry.stat.st_mode) & ~_HIGH_BITS
                info.mtime = int(entry.stat.st_mtime)
                tar.addfile(info)
                continue
            f = entry.open()
            if f is None:
                continue
            with f:
                info = tar.gettarinfo(arcname=entry.relative, fileobj=f)
                info.mode &= ~_HIGH_BITS
                tar.addfile(info, f)
            count += 1
    return count


def extract_tar(fileobj: Readable, destination: Path, *, what: str) -> int:
    """Extract a (possibly gzipped) tar stream into ``destination``, refusing anything unsafe (see
    the module docstring); the number of regular files. Raises ValidationError naming the member
    and ``what`` the archive is (``source directory s3://...``); what came before it stays."""
    destination.mkdir(parents=True, exist_ok=True)
    root = os.open(destination, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        extraction = _Extraction(root, str(destination.resolve()), what)
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:  # type: ignore[call-overload]
            for member in tar:
                extraction.add(tar, member)
        return len(extraction.regular)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValidationError(f"{what} is not a valid tar archive: {exc}", field=what) from None
    finally:
        os.close(root)


class _Extraction:
    """One archive being extracted under the folder open as ``root``."""

    def __init__(self, root: int, root_path: str, what: str) -> None:
        self.root = root
        self.root_path = root_path
        self.what = what
        self.regular: set[str] = set()  # regular files written so far (what a hard link may name)
        self.through: dict[str, str] = {}  # a folder a link's target goes through → that link

    def refuse(self, name: str, reason: str) -> NoReturn:
        raise ValidationError(
            f"{self.what}: refused archive member {name!r}: {reason}", field=self.what, value=name
        )

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = self.parts(name, name, "its name")
        self.check_kind(member)
        path = "/".join(parts)
        through: tuple[str, ...] = ()
        if member.issym():
            through = self.link_target(name, parts, member.linkname)
        elif member.islnk():
            target = "/".join(self.parts(member.linkname, name, "its hard link target"))
            if target not in self.regular or target == path:
                self.refuse(
                    name,
                    f"it is a hard link to {member.linkname!r}, which is not a regular file extracted "
                    "before it from this archive (the only hard links allowed; they are copied)",
                )
        try:
            filtered = tarfile.data_filter(member, self.root_path)
        except tarfile.FilterError as exc:
            self.refuse(name, _FILTER_REASONS.get(type(exc), "tarfile's data filter refuses it"))
        if not parts:
            return  # the folder itself ("./")
        try:
            parent = self.open_parent(name, parts)
            try:
                if member.isdir():
                    self.make_dir(name, parent, parts[-1])
                elif member.issym():
                    self.clear(name, parent, parts[-1])
                    os.symlink(member.linkname, parts[-1], dir_fd=parent)
                    self.through.update(dict.fromkeys(through, path))
                else:
                    with self.source(tar, member) as source:
                        self.write_file(name, parent, parts[-1], source, filtered)
            finally:
                os.close(parent)
        except OSError as exc:
            self.refuse(name, f"it cannot be written: {exc.strerror or exc}")
        if member.isreg() or member.islnk():
            self.regular.add(path)
        else:
            self.regular.discard(path)

    def source(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
        """A regular file's bytes: its own, or (a hard link) those of the file it names."""
        if not member.islnk():
            source = tar.extractfile(member)
            assert source is not None
            return source
        parts = self.parts(member.linkname, member.name, "its hard link target")
        parent = self.open_parent(member.name, parts, create=False)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self.refuse(member.name, f"it is a hard link to {member.linkname!r}, not a regular file")
        return os.fdopen(fd, "rb")

    # -- checks -----------------------------------------------------------------------------------
    def parts(self, name: str, member: str, what: str) -> tuple[str, ...]:
        """``name``'s components below the folder ("." parts dropped), refusing any that could
        leave it or that the filesystem would read differently."""
        self.check_text(name, member, what)
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            self.refuse(member, f"{what} has a '..' part, which would leave the folder")
        return parts

    def check_text(self, name: str, member: str, what: str) -> None:
        if "\x00" in name:
            self.refuse(member, f"{what} holds a NUL byte")
        if "\\" in name:
            self.refuse(member, f"{what} holds a backslash (a Windows path separator)")
        if name.startswith("/"):
            self.refuse(member, f"{what} is an absolute path")
        if len(os.fsencode(name)) > PATH_MAX:
            self.refuse(member, f"{what} is longer than {PATH_MAX} bytes")
        if any(len(os.fsencode(p)) > NAME_MAX for p in name.split("/")):
            self.refuse(member, f"{what} has a part longer than {NAME_MAX} bytes")

    def check_kind(self, member: tarfile.TarInfo) -> None:
        if member.ischr():
            self.refuse(member.name, "it is a character device")
        if member.isblk():
            self.refuse(member.name, "it is a block device")
        if member.isfifo():
            self.refuse(member.name, "it is a FIFO")
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            self.refuse(member.name, f"it is not a file, folder or link (tar type {member.type!r})")
        for bit, word in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_ISVTX, "sticky")):
            if member.mode & bit:
                self.refuse(member.name, f"it has the {word} bit set (mode {member.mode:o})")

    def link_target(self, name: str, parts: tuple[str, ...], linkname: str) -> tuple[str, ...]:
        """Check where a symbolic link at ``parts`` to ``linkname`` leads, followed component by
        component as the kernel follows it: ``..`` may not climb above the folder, and every
        component before the last must be a real folder (or nothing yet, and then it must never
        become a link: the paths returned). The link itself may not be such a path."""
        self.check_text(linkname, name, "its link target")
        stack = list(parts[:-1])
        components = [c for c in linkname.split("/") if c not in ("", ".")]
        through: list[str] = []
        for i, component in enumerate(components):
            if component == "..":
                if not stack:
                    self.refuse(name, f"it links to {linkname!r}, outside the folder")
                stack.pop()
                continue
            stack.append(component)
            if i < len(components) - 1:
                prefix = "/".join(stack)
                mode = self.mode_on_disk(stack)
                if mode is None or stat.S_ISLNK(mode):
                    self.refuse(name, f"it links to {linkname!r} through {prefix!r}, a symbolic link")
                through.append(prefix)
        path = "/".join(parts)
        if path in self.through or path in through:
            link = self.through.get(path, path)
            self.refuse(name, f"the link {link!r} goes through it as a folder: it may not be a link")
        return tuple(through)

    def mode_on_disk(self, parts: list[str]) -> int | None:
        """The st_mode of ``parts`` (not followed), 0 if nothing is there, None if a folder on
        the way is not one."""
        try:
            parent = self.open_parent("", tuple(parts), create=False)
        except (OSError, ValidationError):
            return None
        try:
            return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return 0
        finally:
            os.close(parent)

    # -- writing, one component at a time, never through a link ---------------------------------
    def open_parent(self, name: str, parts: tuple[str, ...], *, create: bool = True) -> int:
        """A descriptor of the folder that holds ``parts[-1]``, made as needed."""
        fd = os.dup(self.root)
        try:
            for i, part in enumerate(parts[:-1]):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    kind = describe(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
                    self.refuse(name, f"it would be written through {'/'.join(parts[: i + 1])!r}, {kind}")
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def clear(self, name: str, parent: int, last: str) -> None:
        """Make room for a member named ``last`` (the same name twice: the later one wins, as with
        tar); a folder is never replaced."""
        try:
            st = os.stat(last, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self.refuse(name, "it would replace a folder")
        os.unlink(last, dir_fd=parent)

    def make_dir(self, name: str, parent: int, last: str) -> None:
        try:
            os.mkdir(last, 0o755, dir_fd=parent)
        except FileExistsError:
            st = os.stat(last, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self.refuse(name, f"it is a folder where the archive made {describe(st.st_mode)}")

    def write_file(self, name: str, parent: int, last: str, source: IO[bytes], info: tarfile.TarInfo) -> None:
        self.clear(name, parent, last)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(last, flags, 0o600, dir_fd=parent), "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
            if info.mode is not None:
                os.fchmod(out.fileno(), info.mode)
            os.utime(out.fileno(), (info.mtime, info.mtime))


_FILTER_REASONS: dict[type[Exception], str] = {
    tarfile.AbsolutePathError: "its name is an absolute path",
    tarfile.OutsideDestinationError: "it would be written outside the folder",
    tarfile.SpecialFileError: "it is a special file",
    tarfile.AbsoluteLinkError: "it links to an absolute path",
    tarfile.LinkOutsideDestinationError: "it links outside the folder",
}


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
