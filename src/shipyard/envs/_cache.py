"""Building and caching job environments with uv.

Environments live in ``<data dir>/envs/<key>/``, a virtual environment whose key hashes its pinned
requirements and the job's ``requirements.txt``. The first job that needs one builds it under an
exclusive lock (concurrent jobs wait and then reuse it); ``shipyard-env.json`` is written last, so
a folder without it is an interrupted build and is rebuilt. Jobs hold a shared lock while they
run, so pruning never removes an environment in use. A cached environment is found with one
``stat``: no network, no resolver.

Every environment gets its bytecode, compiled once in the background after it is built (or, for
one built before Shipyard did this, after the first job that uses it): see ``_bytecode.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from shipyard.envs._images import EnvironmentSpec
from shipyard.errors import ShipyardError

MARKER = "shipyard-env.json"


class EnvironmentBuildError(ShipyardError):
    """Installing a job's environment failed; the message carries the resolver's own words."""


@dataclasses.dataclass(frozen=True)
class PackageSources:
    """Where packages come from: an index, extra indexes, and local wheel folders (find-links)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()

    def uv_args(self) -> list[str]:
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args

    def with_own(self, own: Mapping[str, Sequence[str]] | None) -> PackageSources:
        """These sources with an environment's own (EnvironmentSpec.sources): its indexes
        searched before the site's, its wheel folders beside the site's."""
        if not own:
            return self
        return PackageSources(
            self.index_url,
            (*own.get("extra_index_urls", ()), *self.extra_index_urls),
            (*own.get("find_links", ()), *self.find_links),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PackageSources:
        return cls(
            data.get("index_url"), tuple(data.get("extra_index_urls", ())), tuple(data.get("find_links", ()))
        )


@dataclasses.dataclass(frozen=True)
class ResolvedEnvironment:
    python: Path
    how: str  # "server" (the server's own interpreter), "site", "cached" or "built"
    key: str | None
    seconds: float


@dataclasses.dataclass(frozen=True)
class CachedEnvironment:
    key: str
    name: str
    path: Path
    size_bytes: int
    created: dt.datetime
    last_used: dt.datetime
    jobs: int


class EnvironmentCache:
    def __init__(
        self, root: Path, sources: PackageSources | None = None, *, allow_server_python: bool = True
    ) -> None:
        self.root = root
        self.sources = sources or PackageSources()
        self.allow_server_python = allow_server_python

    def resolve(
        self, spec: EnvironmentSpec, requirements_txt: str = "", *, log: Callable[[str], None], job: str = ""
    ) -> ResolvedEnvironment:
        started = time.monotonic()
        if spec.python and not requirements_txt.strip():
            return ResolvedEnvironment(Path(spec.python), "site", None, time.monotonic() - started)
        # Sources of its own (a GPU type's CUDA builds): what the server has is not what it asks for.
        if (
            self.allow_server_python
            and not spec.sources
            and not requirements_txt.strip()
            and satisfied_here(spec.requirements)
        ):
            return ResolvedEnvironment(Path(sys.executable), "server", None, time.monotonic() - started)
        check_job_requirements(requirements_txt)
        key = self._key(spec, requirements_txt)
        folder = self.root / key
        if not (folder / MARKER).exists():
            self.root.mkdir(parents=True, exist_ok=True)
            with _locked(self.root / f"{key}.lock", fcntl.LOCK_EX):
                if not (folder / MARKER).exists():  # built by another job while we waited?
                    self._build(spec, requirements_txt, folder, log)
            how = "built"
        else:
            how = "cached"
        if not has_bytecode(folder):
            from shipyard.envs._bytecode import compile_soon

            compile_soon(self.root, key)
            log(f"Compiling environment {key}'s bytecode in the background (later jobs import faster)")
        with contextlib.suppress(OSError), (folder / "jobs.log").open("a") as f:
            f.write(f"{dt.datetime.now(dt.UTC).isoformat()} {job}\n")
        return ResolvedEnvironment(folder / "bin" / "python", how, key, time.monotonic() - started)

    def _key(self, spec: EnvironmentSpec, requirements_txt: str) -> str:
        """The environment's key. Built on the server's Python, an environment is a venv of the
        interpreter that Python runs on (a venv's own base), so servers in different venvs of one
        interpreter share it. Keys once named the server's venv interpreter: an environment cached
        under such a key is used as it is, not built again."""
        if spec.python:
            return spec.key(requirements_txt, python_version=f"{spec.python} {sys.version}")
        base = getattr(sys, "_base_executable", "") or sys.executable
        key = spec.key(requirements_txt, python_version=f"{base} {sys.version}")
        legacy = spec.key(requirements_txt, python_version=f"{sys.executable} {sys.version}")
        if not (self.root / key / MARKER).exists() and (self.root / legacy / MARKER).exists():
            return legacy
        return key

    @contextlib.contextmanager
    def in_use(self, key: str | None) -> Iterator[None]:
        """Hold while a job runs in the environment, so that prune leaves it alone."""
        if key is None:
            yield
            return
        with _locked(self.root / f"{key}.lock", fcntl.LOCK_SH):
            yield

    def _build(
        self, spec: EnvironmentSpec, requirements_txt: str, folder: Path, log: Callable[[str], None]
    ) -> None:
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted earlier build
        uv = _uv()
        base = spec.python or sys.executable
        log(f"Building environment {spec.name} ({folder.name}) with uv")
        # With pip: scripts run `pip install -r requirements.txt` themselves (the SDK's
        # FrameworkProcessor does); built with those requirements, they find them satisfied.
        venv = [uv, "venv", "--quiet", "--seed", "--python", base, str(folder)]
        if spec.python:
            venv.append("--system-site-packages")
        self._run(venv, log)
        # Wheels only: building a source distribution runs its setup.py here, as the server's user and
        # outside any sandbox, and a job's requirements.txt names what it likes.
        install = [uv, "pip", "install", "--no-build", "--python", str(folder / "bin" / "python")]
        sources = self.sources.with_own(spec.sources)
        if spec.sources:
            log(f"Packages of {spec.name} come first from {' '.join(sources.uv_args())}")
        install += sources.uv_args()
        install += list(spec.requirements)
        if requirements_txt.strip():
            requirements_file = folder / "job-requirements.txt"
            requirements_file.write_text(requirements_txt)
            install += ["-r", str(requirements_file)]
        if len(install) > 6 + len(sources.uv_args()):
            self._run(install, log)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        (folder / MARKER).write_text(
            json.dumps(
                {
                    "name": spec.name,
                    "requirements": list(spec.requirements),
                    "job_requirements": requirements_txt,
                    "created": dt.datetime.now(dt.UTC).isoformat(),
                    "size_bytes": size,
                }
            )
        )

    @staticmethod
    def _run(command: Sequence[str], log: Callable[[str], None]) -> None:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # The system's certificate store: sites (and this one) often reach indexes through a
            # proxy with its own CA.
            env={"UV_SYSTEM_CERTS": "1", **os.environ, "UV_NO_PROGRESS": "1"},
        )
        assert process.stdout is not None
        lines: list[str] = []
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            lines.append(line)
            log(line)
        if process.wait() != 0:
            detail = "\n".join(line for line in lines if line.strip())[-1500:]
            raise EnvironmentBuildError(f"could not install the job's environment:\n{detail}")

    def environments(self) -> list[CachedEnvironment]:
        found: list[CachedEnvironment] = []
        if not self.root.is_dir():
            return found
        for folder in sorted(self.root.iterdir()):
            marker = folder / MARKER
            if not marker.is_file():
                continue
            meta = json.loads(marker.read_text())
            jobs_log = folder / "jobs.log"
            last_used = jobs_log.stat().st_mtime if jobs_log.exists() else marker.stat().st_mtime
            jobs = len(jobs_log.read_text().splitlines()) if jobs_log.exists() else 0
            found.append(
                CachedEnvironment(
                    folder.name,
                    meta["name"],
                    folder,
                    int(meta.get("size_bytes", 0)),
                    dt.datetime.fromisoformat(meta["created"]),
                    dt.datetime.fromtimestamp(last_used, dt.UTC),
                    jobs,
                )
            )
        return found

    def prune(self, *, unused_for: dt.timedelta) -> list[CachedEnvironment]:
        """Remove environments no job used for ``unused_for``, skipping any in use right now."""
        cutoff = dt.datetime.now(dt.UTC) - unused_for
        removed = []
        for env in self.environments():
            if env.last_used > cutoff:
                continue
            try:
                with _locked(self.root / f"{env.key}.lock", fcntl.LOCK_EX | fcntl.LOCK_NB):
                    shutil.rmtree(env.path)
            except BlockingIOError:
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.root / f"{env.key}.lock").unlink()
            removed.append(env)
        return removed


def environment_roots(python: Path) -> tuple[Path, ...]:
    """The folders an interpreter needs to run, wherever they lie (even under a hidden /tmp, or
    under a /root the job's uid cannot enter): what a sandbox must show. Its environment (the venv
    root, or the bin/ folder), and the installation a venv's interpreter links to (pyenv, uv)."""
    root = python.parent.parent
    if not (root / "pyvenv.cfg").exists():
        return (python.parent,)
    base = Path(os.path.realpath(python)).parent.parent
    return (root,) if base == root or base == Path("/usr") else (root, base)


# Options a job's requirements.txt may carry: where packages come from, on the network. Not -r/-c
# (which read files of the server's machine), -e or --find-links (folders of it).
_INDEX_OPTIONS = ("--index-url", "--extra-index-url", "-i")


def check_job_requirements(text: str) -> None:
    """Refuse what a job's requirements.txt may not ask of the server, which installs it outside
    the job's sandbox: files and folders of the server's machine (``-r``, ``-c``, ``-e``,
    ``--find-links``, paths and ``file:`` URLs) and anything but requirements and index URLs.
    Source distributions are refused by the build itself (wheels only). Names the line."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        refused = None
        if line.startswith("-"):
            option, _, value = line.replace("=", " ", 1).partition(" ")
            value = value.strip()
            if option not in _INDEX_OPTIONS:
                refused = f"the option {option} (only requirements and --index-url/--extra-index-url)"
            elif not value.startswith(("https://", "http://")):
                refused = f"{option} {value!r} (an index is an http(s) URL)"
        else:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                refused = "a line that is not a requirement (a path or a URL without a name)"
            else:
                if requirement.url and not requirement.url.startswith(("https://", "http://")):
                    refused = f"{requirement.name} from {requirement.url} (a package's URL is http(s))"
        if refused:
            raise EnvironmentBuildError(
                f"requirements.txt line {number} ({raw.strip()!r}): Shipyard does not install {refused}: "
                "it installs the environment outside the job's sandbox"
            )


def has_bytecode(folder: Path) -> bool:
    """Whether the environment in ``folder`` has its bytecode compiled (``_bytecode.py``)."""
    try:
        return bool(json.loads((folder / MARKER).read_text()).get("bytecode"))
    except (OSError, ValueError):
        return False


def satisfied_here(requirements: Sequence[str]) -> bool:
    """Whether this interpreter already has every requirement (a job may then run in it as is).

    Every job without a requirements.txt asks this first, in a freshly forked agent: the versions
    come from the ``<name>-<version>.dist-info`` folder names on ``sys.path`` (one listing of each
    folder). Only a package installed as an egg-info, whose folder name has no version, is looked
    up by ``importlib.metadata``, which parses every distribution's metadata file (tens of
    milliseconds in a new process); one in neither is not installed here."""
    installed = _installed_versions()
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            return False
        version = installed.get(canonicalize_name(requirement.name))
        if version is None:
            return False
        if not version:
            try:
                version = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                return False
        if not requirement.specifier.contains(version, prereleases=True):
            return False
    return True


def _installed_versions() -> dict[str, str]:
    """Normalized name → version of the distributions installed as wheels on ``sys.path`` (the
    first found, as importlib.metadata finds them), read from their dist-info folders' names; ""
    where the first found is another kind (an egg-info), whose version its metadata says."""
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info"):
                project, _, version = name[: -len(".dist-info")].partition("-")
                found.setdefault(canonicalize_name(project), version)
            elif name.endswith(".egg-info"):
                found.setdefault(canonicalize_name(name.partition("-")[0].removesuffix(".egg-info")), "")
    return found


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[IO[str]]:
    with path.open("a") as f:
        fcntl.flock(f, mode)
        try:
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise EnvironmentBuildError("uv is not installed: pip install uv") from None
        return found
