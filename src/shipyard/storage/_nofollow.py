"""Reading a folder a job wrote without following anything it planted out of that folder.

A job can leave symbolic links (``leak -> /etc/shadow``), hard links (a second name of some other
file), FIFOs and device files in the folders Shipyard uploads from. Everything here opens paths
one component at a time, relative to an open folder, with ``O_NOFOLLOW``: a symbolic link is
never followed, not even one swapped in after a check, and a regular file is read only when the
open file itself is regular with a single name (``st_nlink == 1``). What is passed over is
reported to a callback (its path relative to the folder, and why) so the job's log can say so.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

Skipped = Callable[[str, str], None]
"""Called with a path (relative to the folder walked) and why it was passed over."""

MAX_DEPTH = 256  # folders below the one walked; an S3 key (1,024 bytes) cannot go deeper anyway

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO must not block


def describe(mode: int) -> str:
    """What a file of ``mode`` is, in words, for messages."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


@dataclasses.dataclass(frozen=True)
class FolderEntry:
    """A folder or regular file found by :func:`walk_folder`; ``relative`` is its POSIX path below
    the folder walked. Valid only until the walk moves on (it holds its folder's descriptor)."""

    relative: str
    is_dir: bool
    stat: os.stat_result
    _dir_fd: int
    _name: str
    _skipped: Skipped

    def open(self) -> BinaryIO | None:
        """The file, opened without following a link and checked again on the open file (it may
        have been swapped since the walk saw it); None, reported as skipped, if it is no longer a
        regular file with one name."""
        try:
            fd = os.open(self._name, _FILE_FLAGS, dir_fd=self._dir_fd)
        except FileNotFoundError:
            return None  # gone meanwhile: nothing to upload
        except OSError as exc:  # ELOOP: swapped for a link since the walk saw it
            self._skipped(self.relative, "a symbolic link" if exc.errno == errno.ELOOP else str(exc.strerror))
            return None
        st = os.fstat(fd)
        reason = _unsafe(st)
        if reason is not None:
            os.close(fd)
            self._skipped(self.relative, reason)
            return None
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")


def _unsafe(st: os.stat_result) -> str | None:
    """Why a file with this (l)stat is not read, or None for a regular file with one name."""
    if not stat.S_ISREG(st.st_mode):
        return describe(st.st_mode)
    if st.st_nlink > 1:
        return f"a hard link ({st.st_nlink} names; the others may be outside the job's folder)"
    return None


def open_folder(folder: Path, within: Path | None = None) -> int:
    """A descriptor of ``folder``, not following a link at its end, nor (given ``within``, a
    folder the job cannot replace, such as the instance's ``ml``) at any component below
    ``within``. Raises OSError (ELOOP, ENOTDIR, ENOENT) otherwise."""
    if within is None:
        return os.open(folder, _DIR_FLAGS)
    fd = os.open(within, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for part in folder.relative_to(within).parts:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def walk_folder(folder: Path, skipped: Skipped, *, within: Path | None = None) -> Iterator[FolderEntry]:
    """Every folder and regular file with a single name below ``folder``, depth first in name
    order (as sorting the relative paths by their parts would give); symbolic links (to files or
    folders), hard links, FIFOs, sockets and devices are reported to ``skipped`` and passed over.
    Nothing is yielded if ``folder`` is missing or is (or, below ``within``, goes through) a link:
    that is reported as ``"."``."""
    try:
        top = open_folder(folder, within)
    except FileNotFoundError:
        return
    except OSError:
        skipped(".", "a symbolic link, or under one")
        return
    try:
        yield from _walk(top, "", skipped, 0)
    finally:
        os.close(top)


def _walk(fd: int, prefix: str, skipped: Skipped, depth: int) -> Iterator[FolderEntry]:
    with os.scandir(fd) as listing:
        names = sorted(entry.name for entry in listing)
    for name in names:
        relative = prefix + name
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if depth >= MAX_DEPTH:
                skipped(relative, f"a folder nested more than {MAX_DEPTH} deep")
                continue
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue
            except OSError:
                skipped(relative, "a symbolic link")
                continue
            try:
                yield FolderEntry(relative, True, st, fd, name, skipped)
                yield from _walk(child, relative + "/", skipped, depth + 1)
            finally:
                os.close(child)
            continue
        reason = _unsafe(st)
        if reason is not None:
            skipped(relative, reason)
            continue
        yield FolderEntry(relative, False, st, fd, name, skipped)


def read_inside(folder: Path, relative: str, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of the regular file ``relative`` below ``folder``, reached without
    following any link (in the path or at its end); None if there is no such regular file."""
    path = folder / relative
    if ".." in Path(relative).parts or path == folder:
        return None
    try:
        fd = open_folder(path.parent, folder)
    except OSError:
        return None
    try:
        f = _open_regular(fd, path.name)
    except OSError:
        return None
    finally:
        os.close(fd)
    if f is None:
        return None
    with f:
        return f.read(limit)


def _open_regular(dir_fd: int, name: str) -> BinaryIO | None:
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    if _unsafe(os.fstat(fd)) is not None:
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
