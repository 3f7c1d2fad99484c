"""Extracting untrusted archives: every hostile shape is refused naming its member, and nothing is
written outside the target folder (a sentinel folder next to it stays as it was); ordinary
archives still extract. Packing a job's folder skips the links and special files it planted."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipyard.errors import ValidationError
from shipyard.storage._archives import ChunkReader, extract_tar, pack_directory

WHAT = "source directory s3://bucket/code/sourcedir.tar.gz"
VICTIM = b"host file: must stay as it is"


@dataclass
class Dirs:
    """``target`` is extracted into; ``sentinel`` (with ``victim``) and ``evil`` lie next to it."""

    root: Path
    target: Path
    sentinel: Path
    evil: Path

    @property
    def victim(self) -> Path:
        return self.sentinel / "victim"


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    d = Dirs(tmp_path, tmp_path / "data-dir", tmp_path / "sentinel", tmp_path / "data-dir-evil")
    d.sentinel.mkdir()
    d.evil.mkdir()
    d.victim.write_bytes(VICTIM)
    return d


def _file(name: str, data: bytes = b"data", mode: int = 0o644, **pax: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def _dir(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info, b""


def _link(name: str, target: str, *, hard: bool = False, **pax: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname, info.mode = target, 0o777
    if pax:
        info.pax_headers = dict(pax)
    return info, b""


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, 0o644
    info.devmajor, info.devminor = 1, 3
    return info, b""


def _tar(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def _cve_2025_4517(d: Dirs) -> list[tuple[tarfile.TarInfo, bytes]]:
    """CPython's test of CVE-2025-4517: links that realpath() stops expanding past PATH_MAX."""
    steps = "abcdefghijklmnop"
    path_max = os.pathconf("/", "PC_PATH_MAX")
    component = "d" * ((path_max - len(str(d.target)) - 1) // (len(steps) + 1))
    members = []
    path = ""
    for step in steps:
        members.append(_dir(os.path.join(path, component), mode=0o777))
        members.append(_link(os.path.join(path, step), component))
        path = os.path.join(path, component)
    linkpath = os.path.join(*steps, "l" * 254)
    members.append(_link(linkpath, os.path.join(*[".."] * len(steps))))
    members.append(_link("escape", os.path.join(linkpath, "..")))
    members.append(_link("flaglink", "escape/sentinel/victim", hard=True))
    members.append(_file("flaglink", b"overwritten"))
    members.append(_file("escape/sentinel/newfile", b"new"))
    return members


Shape = Callable[[Dirs], list[tuple[tarfile.TarInfo, bytes]]]

# id → (members, the member refused, words of the reason)
HOSTILE: dict[str, tuple[Shape, str, str]] = {
    "dotdot member": (lambda d: [_file("../sentinel/evil")], "../sentinel/evil", "has a '..' part"),
    "dotdot inside a name": (
        lambda d: [_dir("sub"), _file("sub/../../sentinel/evil")],
        "sub/../../sentinel/evil",
        "has a '..' part",
    ),
    "absolute member": (lambda d: [_file(f"{d.sentinel}/evil")], "{sentinel}/evil", "is an absolute path"),
    "PAX path override": (
        lambda d: [_file("harmless.txt", path="../sentinel/evil")],
        "../sentinel/evil",
        "has a '..' part",
    ),
    "PAX linkpath override": (
        lambda d: [_link("l", "ok", linkpath="../sentinel"), _file("l/evil")],
        "l",
        "it links to '../sentinel', outside the folder",
    ),
    "GNU long name with dotdot": (
        lambda d: [_file("../" + "x" * 120 + "/evil")],
        "../" + "x" * 120 + "/evil",
        "has a '..' part",
    ),
    "absolute symlink": (
        lambda d: [_link("l", str(d.sentinel)), _file("l/evil")],
        "l",
        "its link target is an absolute path",
    ),
    "relative symlink out": (
        lambda d: [_link("l", "../sentinel"), _file("l/evil")],
        "l",
        "it links to '../sentinel', outside the folder",
    ),
    "symlink chain out": (
        lambda d: [_dir("d"), _link("d/up", ".."), _link("d/out", "up/../sentinel"), _file("d/out/evil")],
        "d/out",
        "through 'd/up', a symbolic link",
    ),
    "symlink redirected by a later link": (
        lambda d: [_dir("a/b"), _link("a/b/l", "../../p/../sentinel"), _link("p", ".")],
        "p",
        "the link 'a/b/l' goes through it as a folder: it may not be a link",
    ),
    "sibling-prefix symlink": (
        lambda d: [_link("l", "../data-dir-evil"), _file("l/pwned")],
        "l",
        "it links to '../data-dir-evil', outside the folder",
    ),
    "directory swap": (
        lambda d: [_dir("d"), _dir("e"), _link("d", "e"), _file("d/evil")],
        "d",
        "it would replace a folder",
    ),
    "symlink then a file through it": (
        lambda d: [_dir("sub"), _link("l", "sub"), _file("l/evil")],
        "l/evil",
        "it would be written through 'l', a symbolic link",
    ),
    "hard link absolute": (
        lambda d: [_link("h", f"{d.victim}", hard=True), _file("h", b"overwritten")],
        "h",
        "its hard link target is an absolute path",
    ),
    "hard link relative out": (
        lambda d: [_link("h", "../sentinel/victim", hard=True), _file("h", b"overwritten")],
        "h",
        "its hard link target has a '..' part",
    ),
    "hard link to a symlink": (
        lambda d: [_file("ok.txt"), _link("s", "ok.txt"), _link("h", "s", hard=True)],
        "h",
        "it is a hard link to 's', which is not a regular file extracted before it",
    ),
    "character device": (lambda d: [_special("null", tarfile.CHRTYPE)], "null", "it is a character device"),
    "block device": (lambda d: [_special("disk", tarfile.BLKTYPE)], "disk", "it is a block device"),
    "FIFO": (lambda d: [_special("pipe", tarfile.FIFOTYPE)], "pipe", "it is a FIFO"),
    "setuid file": (lambda d: [_file("su", mode=0o4755)], "su", "it has the setuid bit set (mode 4755)"),
    "setgid file": (lambda d: [_file("sg", mode=0o2755)], "sg", "it has the setgid bit set (mode 2755)"),
    "sticky folder": (lambda d: [_dir("tmp", mode=0o1777)], "tmp", "it has the sticky bit set (mode 1777)"),
    "backslash names": (
        lambda d: [_file("..\\sentinel\\evil")],
        "..\\sentinel\\evil",
        "its name holds a backslash",
    ),
    "NUL in a name": (
        lambda d: [_file("ok.txt", path="ok\x00/../../sentinel/evil")],
        "ok\x00/../../sentinel/evil",
        "its name holds a NUL byte",
    ),
    "CVE-2025-4517 deep symlink and PATH_MAX chain": (
        _cve_2025_4517,
        "/".join("abcdefghijklmnop") + "/" + "l" * 254,
        "it would be written through 'a', a symbolic link",
    ),
}


def _outside(d: Dirs) -> dict[str, bytes | None]:
    """Everything next to the target (and in the sentinels), with file contents."""
    seen: dict[str, bytes | None] = {}
    for path in sorted(d.root.rglob("*")):
        if path == d.target or d.target in path.parents:
            continue
        seen[str(path.relative_to(d.root))] = path.read_bytes() if path.is_file() else None
    return seen


def _links_out(target: Path) -> list[str]:
    """Links left in the target that lead outside it."""
    root = os.path.realpath(target)
    out = []
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and os.path.commonpath([os.path.realpath(path), root]) != root:
                out.append(path)
    return out


@pytest.mark.parametrize("shape", list(HOSTILE), ids=list(HOSTILE))
def test_a_hostile_archive_is_refused_naming_its_member_and_writes_nothing_outside(
    dirs: Dirs, shape: str
) -> None:
    build, member, reason = HOSTILE[shape]
    archive = _tar(build(dirs), tarfile.GNU_FORMAT if "GNU" in shape else tarfile.PAX_FORMAT)
    before = _outside(dirs)
    with pytest.raises(ValidationError) as caught:
        extract_tar(ChunkReader([archive[:1000], archive[1000:]]), dirs.target, what=WHAT)
    message = caught.value.message
    expected = member.replace("{sentinel}", str(dirs.sentinel))
    assert f"{WHAT}: refused archive member {expected!r}: " in message, message
    assert reason in message, message
    assert str(dirs.root) not in message.replace(str(dirs.sentinel) + "/evil", "")  # no host paths
    assert caught.value.field == WHAT
    assert _outside(dirs) == before
    assert dirs.victim.stat().st_nlink == 1
    assert _links_out(dirs.target) == []


def test_at_least_the_issues_23_shapes_are_covered() -> None:
    assert len(HOSTILE) >= 23


def test_the_cve_chain_is_refused_before_any_link_is_followed(dirs: Dirs) -> None:
    with pytest.raises(ValidationError, match="written through 'a', a symbolic link"):
        extract_tar(io.BytesIO(_tar(_cve_2025_4517(dirs))), dirs.target, what=WHAT)
    assert not (dirs.root / "escape").exists()
    assert dirs.victim.read_bytes() == VICTIM


def test_an_ordinary_archive_extracts_with_its_inside_links_modes_and_hard_links(tmp_path: Path) -> None:
    archive = _tar(
        [
            _dir("./"),
            _file("./train.py", b"print('hi')\n", mode=0o755),
            _dir("lib"),
            _file("lib/libm.so.1", b"ELF"),
            _link("lib/libm.so", "libm.so.1"),
            _dir("bin"),
            _link("bin/tool", "../lib/libm.so"),
            _link("latest", "lib/./libm.so.1"),
            _file("data/a.csv", b"1,2\n"),
            _link("data/b.csv", "data/a.csv", hard=True),
            _file("notes.txt", b"first"),
            _file("notes.txt", b"second"),  # the same name twice: the later one wins, as with tar
            _link("dangling", "later/file"),
            _dir("later"),
        ]
    )
    target = tmp_path / "code"
    assert extract_tar(io.BytesIO(archive), target, what=WHAT) == 5
    assert (target / "train.py").read_text() == "print('hi')\n"
    assert stat.S_IMODE((target / "train.py").stat().st_mode) == 0o755
    assert (target / "bin" / "tool").read_bytes() == b"ELF"
    assert (target / "latest").read_bytes() == b"ELF"
    assert (target / "data" / "b.csv").read_bytes() == b"1,2\n"
    assert (target / "data" / "b.csv").stat().st_nlink == 1  # a copy, not a second name
    assert (target / "notes.txt").read_text() == "second"
    assert os.readlink(target / "dangling") == "later/file"


def test_a_group_writable_file_is_written_without_group_or_other_write(tmp_path: Path) -> None:
    extract_tar(io.BytesIO(_tar([_file("w.txt", mode=0o666)])), tmp_path / "t", what=WHAT)
    assert stat.S_IMODE((tmp_path / "t" / "w.txt").stat().st_mode) == 0o644


def test_a_link_already_on_disk_is_never_written_through(dirs: Dirs) -> None:
    dirs.target.mkdir()
    (dirs.target / "planted").symlink_to(dirs.sentinel)
    (dirs.target / "f").symlink_to(dirs.victim)
    for member in ("planted/evil", "f"):
        with pytest.raises(ValidationError, match=f"refused archive member '{member}': it would be"):
            extract_tar(io.BytesIO(_tar([_file(member, b"mine")])), dirs.target, what=WHAT)
    assert sorted(p.name for p in dirs.sentinel.iterdir()) == ["victim"]
    assert dirs.victim.read_bytes() == VICTIM


def test_garbage_is_refused_as_not_a_tar_archive(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=f"{WHAT} is not a valid tar archive"):
        extract_tar(io.BytesIO(b"\x1f\x8b not really gzip"), tmp_path / "t", what=WHAT)


def test_packing_skips_links_hard_links_and_fifos_and_says_so(tmp_path: Path) -> None:
    host = tmp_path / "host-secret"
    host.write_text("SECRET")
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.pth").write_bytes(b"weights")
    (folder / "sub" / "w.txt").write_bytes(b"w")
    (folder / "leak").symlink_to(host)
    (folder / "etc").symlink_to("/etc")
    os.link(host, folder / "hard")
    os.mkfifo(folder / "pipe")
    skipped: list[tuple[str, str]] = []
    buffer = io.BytesIO()
    assert pack_directory(folder, buffer, skipped=lambda path, why: skipped.append((path, why))) == 2
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue())) as tar:
        assert tar.getnames() == ["model.pth", "sub", "sub/w.txt"]
        assert b"SECRET" not in b"".join(
            tar.extractfile(m).read()
            for m in tar.getmembers()
            if m.isfile()  # type: ignore[union-attr]
        )
    assert dict(skipped) == {
        "etc": "a symbolic link",
        "hard": "a hard link (2 names; the others may be outside the job's folder)",
        "leak": "a symbolic link",
        "pipe": "a FIFO",
    }
