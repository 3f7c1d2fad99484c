"""A conda ``environment.yml`` as pip requirements, or a refusal naming what pip cannot install.

There is no conda here: a remote function (``@remote``, ``@step``) whose dependencies are an
``environment.yml`` gets what pip can install of it, decided by :func:`pip_requirements` (pure):

- the ``pip:`` section, as it is (options such as ``-r`` or ``--index-url`` are refused: the
  site's package sources decide where packages come from);
- conda packages that have a PyPI package of the same name (or the known other name:
  ``pytorch`` is ``torch``), their version spec in pip's words: conda's ``numpy=1.26`` (a prefix)
  is ``numpy==1.26.*``, ``numpy 1.26`` too, ``scikit-learn>=1.3`` stays, a build string
  (``=py311h...``) is dropped;
- ``python`` (any spec) checked against the site's Python, and ``pip`` itself, which is there.

Refused, each package named with why, all at once: what only conda has (``cudatoolkit``, CUDA
and system libraries, R and its packages), a package from a channel with no PyPI counterpart
(``bioconda::samtools``), alternatives (``a|b``), a Python the site does not have.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from shipyard.errors import ValidationError

# Conda packages whose PyPI package has another name.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "py-opencv": "opencv-python",
    "tensorflow-base": "tensorflow",
    "pyqt": "PyQt5",
}
# What only conda packages: CUDA, compilers, system libraries, R.
CONDA_ONLY = frozenset(
    {
        "cudatoolkit",
        "cudnn",
        "nccl",
        "cuda",
        "cuda-toolkit",
        "cuda-nvcc",
        "cuda-runtime",
        "pytorch-cuda",
        "pytorch-mutex",
        "magma",
        "cupti",
        "mkl",
        "mkl-service",
        "intel-openmp",
        "blas",
        "libblas",
        "openblas",
        "openssl",
        "ca-certificates",
        "zlib",
        "xz",
        "bzip2",
        "tk",
        "readline",
        "ncurses",
        "sqlite",
        "gcc",
        "gxx",
        "gfortran",
        "make",
        "binutils",
        "ld_impl_linux-64",
        "tzdata",
        "openjdk",
        "git",
        "curl",
        "hdf5",
        "ffmpeg",
    }
)
_CONDA_ONLY_PREFIXES = (
    "r-",  # R and its packages
    "cuda-",
    "libcu",
    "libnv",
    "libgcc",
    "libstdcxx",
    "libgfortran",
    "libgomp",
    "libopenblas",
    "libblas",
    "libcblas",
    "liblapack",
    "libffi",
    "libzlib",
    "_",  # conda's own metapackages (_libgcc_mutex, _openmp_mutex)
    "gcc_",
    "gxx_",
    "sysroot_",
)
_GENERAL_CHANNELS = frozenset({"defaults", "conda-forge", "anaconda", "main", "pkgs/main", "pkgs/free"})
_ALREADY_THERE = frozenset({"pip", "setuptools", "wheel"})
_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*)$")


@dataclasses.dataclass(frozen=True)
class Refused:
    """A package pip cannot install, and why."""

    package: str
    reason: str


class CondaEnvironmentRefused(ValidationError):
    """An environment.yml with packages pip cannot install: each named with why."""

    def __init__(self, source: str, refused: Sequence[Refused]) -> None:
        lines = "; ".join(f"{r.package} ({r.reason})" for r in refused)
        super().__init__(
            f"{source} asks for {len(refused)} package(s) that cannot be installed here (there is no "
            f"conda; its pip section and conda packages with a PyPI equivalent are installed with "
            f"pip): {lines}. Remove them, or use a requirements.txt",
            field="dependencies",
            value=[r.package for r in refused],
        )
        self.refused = tuple(refused)


@dataclasses.dataclass(frozen=True)
class PipPlan:
    """What pip installs for an environment.yml: ``requirements`` (requirements.txt lines) and
    ``notes`` (what was dropped, for the job's log)."""

    requirements: tuple[str, ...]
    notes: tuple[str, ...] = ()


def pip_requirements(text: str, *, python_version: str, source: str = "environment.yml") -> PipPlan:
    """The pip requirements for the conda environment file ``text`` on a site whose Python is
    ``python_version`` (``3.11.9``).

    Raises:
        CondaEnvironmentRefused: Some packages cannot be installed with pip (every one named).
        ValidationError: ``text`` is not an environment file.
    """
    document = _load(text, source)
    requirements: list[str] = []
    notes: list[str] = []
    refused: list[Refused] = []
    for entry in document.get("dependencies") or ():
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key != "pip":
                    refused.append(Refused(str(key), "only a pip: section may be a mapping"))
                    continue
                for line in value or ():
                    _pip_line(str(line).strip(), requirements, refused)
            continue
        if not isinstance(entry, str | int | float):
            refused.append(Refused(str(entry), "not a package spec"))
            continue
        _conda_spec(str(entry).strip(), python_version, requirements, notes, refused)
    if refused:
        raise CondaEnvironmentRefused(source, refused)
    return PipPlan(tuple(requirements), tuple(notes))


def _load(text: str, source: str) -> dict[str, Any]:
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{source} is not YAML: {exc}", field="dependencies", value=source) from None
    if document is None:
        return {}
    if not isinstance(document, dict) or not isinstance(document.get("dependencies", []), list):
        raise ValidationError(
            f"{source} is not a conda environment file (a mapping with a dependencies: list)",
            field="dependencies",
            value=source,
        )
    return document


def _pip_line(line: str, requirements: list[str], refused: list[Refused]) -> None:
    if not line or line.startswith("#"):
        return
    if line.startswith("-"):
        refused.append(Refused(line, "pip options are not followed: the site's package sources decide"))
        return
    requirements.append(line)


def _conda_spec(
    spec: str, python_version: str, requirements: list[str], notes: list[str], refused: list[Refused]
) -> None:
    channel, sep, rest = spec.rpartition("::")
    if not sep:
        channel, rest = "", spec
    match = _SPEC.match(rest)
    if match is None:
        refused.append(Refused(spec, "not a conda package spec"))
        return
    name, version = match["name"].lower(), match["rest"].strip()
    if "|" in version:
        refused.append(Refused(spec, "alternatives (|) have no pip form"))
        return
    try:
        pip_version = _pip_version(version)
    except InvalidSpecifier:
        refused.append(Refused(spec, f"version {version!r} has no pip form"))
        return
    if name == "python":
        if pip_version and not SpecifierSet(pip_version).contains(Version(python_version), prereleases=True):
            refused.append(Refused(spec, f"the site's Python is {python_version}"))
        return
    if name in _ALREADY_THERE:
        notes.append(f"{spec}: {name} is already in the environment")
        return
    if name in CONDA_ONLY or (name.startswith(_CONDA_ONLY_PREFIXES) and name not in CONDA_TO_PYPI):
        refused.append(Refused(spec, "a conda-only package: no PyPI equivalent"))
        return
    if channel and channel not in _GENERAL_CHANNELS and name not in CONDA_TO_PYPI:
        refused.append(Refused(spec, f"from channel {channel!r}, which PyPI does not mirror"))
        return
    requirements.append(CONDA_TO_PYPI.get(name, name) + pip_version)


def _pip_version(version: str) -> str:
    """Conda's version part in pip's words (empty: any version)."""
    if not version:
        return ""
    if version[0].isdigit():  # "1.26" or "1.26 py311_0" (the space form): a prefix match
        version = "=" + version.split()[0]
    version = version.replace(" ", "")
    parts = []
    for clause in version.split(","):
        if clause.startswith("=") and not clause.startswith("=="):
            number = clause[1:].split("=", 1)[0]  # "=1.26=py311h" : the build string dropped
            clause = "==" + (number if number.endswith("*") else number + ".*")
        elif clause.startswith("==") and "=" in clause[2:]:
            clause = clause.split("=")[0] + "==" + clause[2:].split("=", 1)[0]
        parts.append(clause)
    pip = ",".join(parts)
    SpecifierSet(pip)  # raises InvalidSpecifier when pip cannot read it
    return pip
