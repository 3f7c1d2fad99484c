"""How the local object store names files: every key maps to its own path, whatever it holds.

A key is cut into *chunks*, and each chunk becomes one name on the path below the bucket folder:

* a chunk that ends at a ``/`` of the key is a folder named ``<text>%2F`` (``train/`` → ``train%2F``);
* a chunk that grows past :data:`CUT` bytes of name (a long run without ``/``) is cut there, as a
  folder named ``<text>%+`` holding the rest (file names are limited to 255 bytes);
* the last chunk is the object's data file, named ``<text>`` (``%`` when it is empty, as for the
  folder object ``data/``).

In every text, ``%`` and control characters are written ``%XX`` (UTF-8 bytes, upper-case hex), and
a file whose text is ``.`` or ``..`` is written ``%2E``/``%2E%2E``. So a name never holds ``/``,
never is ``.`` or ``..``, and a data file (no ``%2F``/``%+`` ending) never shares a name with a
folder: ``model.json`` and ``model.json/w`` are ``model.json`` and ``model.json%2F/w``, ``a/../b`` is
``a%2F/..%2F/b``, still below the bucket folder.

Where a chunk is cut depends only on the text before the cut, so keys that share a beginning share
its folders, and the entries of one folder cover disjoint, ordered ranges of keys: sorting them by
their text (a folder's text followed by the ``/`` it stands for) lists keys in S3's order (UTF-8
byte order, which is code point order) while descending only into the folders a listing needs.
"""

from __future__ import annotations

import dataclasses
import enum
import re

# A chunk is cut once its encoded text passes CUT bytes; the longest name is then a cut folder's,
# CUT + 4 (one more character) + 2 ("%+"), or a metadata file's, CUT + 4 + 5 (".json").
CUT = 240
EMPTY_FILE = "%"
SLASH_MARK = "%2F"
CONTINUED_MARK = "%+"
_ESCAPE = re.compile(r"[%\x00-\x1f\x7f]")
_CANONICAL = re.compile(r"(?:[^%]|%[0-9A-F]{2})*")


class Kind(enum.Enum):
    """What a name stands for."""

    FILE = "file"  # an object's data file: the key ends here
    SLASH = "slash"  # a folder: the chunk's text and then a "/" of the key
    CONTINUED = "continued"  # a folder: a chunk cut for length, the key goes on without "/"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One name in a folder of the layout, decoded.

    ``span`` is the key text the name stands for (a SLASH folder's ends with ``/``); sorted by
    ``(span, rank)``, entries are in key order (a file before a folder whose keys it begins).
    """

    span: str
    rank: int
    kind: Kind
    name: str


def _escape(text: str) -> str:
    return _ESCAPE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), text)


def _width(char: str) -> int:
    return 3 if _ESCAPE.fullmatch(char) else len(char.encode("utf-8"))


def chunks(key: str) -> list[tuple[str, Kind]]:
    """The key's chunks, ``(text, kind)``; the last is the FILE. ``key`` must be validated."""
    out: list[tuple[str, Kind]] = []
    current: list[str] = []
    width = 0
    for char in key:
        if width > CUT:
            out.append(("".join(current), Kind.CONTINUED))
            current, width = [], 0
        if char == "/":
            out.append(("".join(current), Kind.SLASH))
            current, width = [], 0
        else:
            current.append(char)
            width += _width(char)
    out.append(("".join(current), Kind.FILE))
    return out


def encode(text: str, kind: Kind) -> str:
    """The name of one chunk."""
    if kind is Kind.SLASH:
        return _escape(text) + SLASH_MARK
    if kind is Kind.CONTINUED:
        return _escape(text) + CONTINUED_MARK
    if not text:
        return EMPTY_FILE
    if text in (".", ".."):
        return "%2E" * len(text)
    return _escape(text)


def key_names(key: str) -> list[str]:
    """The names on the path from the bucket folder to the key's data file."""
    return [encode(text, kind) for text, kind in chunks(key)]


def decode(name: str) -> Entry | None:
    """What a name in the layout stands for; None for a name the layout never makes (a file put
    there by hand, a leftover): listings pass over it."""
    if name == EMPTY_FILE:
        return Entry("", 0, Kind.FILE, name)
    if "%" not in name and name not in (".", "..") and not _ESCAPE.search(name):
        return Entry(name, 0, Kind.FILE, name)  # the usual name: the text as it is
    if name.endswith(SLASH_MARK):
        kind, body, rank = Kind.SLASH, name[: -len(SLASH_MARK)], 1
    elif name.endswith(CONTINUED_MARK):
        kind, body, rank = Kind.CONTINUED, name[: -len(CONTINUED_MARK)], 1
    else:
        kind, body, rank = Kind.FILE, name, 0
    if not _CANONICAL.fullmatch(body):
        return None
    try:
        text = re.sub(
            rb"%([0-9A-F]{2})", lambda m: bytes([int(m[1], 16)]), body.encode("utf-8", "surrogateescape")
        ).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if encode(text, kind) != name:
        return None  # not the way the layout writes this text: not one of its names
    return Entry(text + "/" if kind is Kind.SLASH else text, rank, kind, name)
