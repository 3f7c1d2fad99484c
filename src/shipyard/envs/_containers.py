"""What AWS's framework containers carry besides the framework, as packages that install here.

A SageMaker script imports more than its framework: AWS's PyTorch and TensorFlow containers carry
the PyData stack (numpy, pandas, scikit-learn, scipy, Pillow), boto3 and requests; scikit-learn
and XGBoost containers carry boto3 and requests; Hugging Face containers pin transformers,
datasets and accelerate (their Dockerfiles and buildspecs in aws/deep-learning-containers). Each
table below keys on the framework version the image names, so a script written for an old
container gets releases of that container's era (the newest of them with wheels for this
Python), not today's. docs/environments.md lists the result per image and what differs from AWS.
"""

from __future__ import annotations

import re

# Every environment. pkg_resources (gone from setuptools 81) is still imported by older libraries
# and scripts: xgboost 1.5, and code written for any container, where setuptools was older.
COMMON = ("setuptools<81", "boto3", "requests")

# The rest of what AWS's PyTorch and TensorFlow containers install with pip or conda.
_DL_EXTRAS = ("h5py", "pyyaml", "psutil", "tqdm", "packaging")

# (first framework version of an era, the PyData stack of that era's containers). The oldest era
# stands for containers on Python 3.6 to 3.9, whose releases have no wheels for this Python: it gets
# the first releases that do (pandas 1.5, scikit-learn 1.1, numpy 1.24).
_PYTORCH_STACKS = (
    ("0", ("numpy<1.25", "pandas<2", "scikit-learn<1.2", "scipy<1.11", "Pillow<10")),
    ("2.0", ("numpy<2", "pandas<2.2", "scikit-learn<1.4", "scipy<1.12", "Pillow<11")),
    ("2.3", ("numpy<2.2", "pandas<2.3", "scikit-learn<1.6", "scipy<1.15", "Pillow<12")),
    ("2.6", ("numpy<2.4", "pandas<3", "scikit-learn<1.8", "scipy<1.17", "Pillow<12")),
)
# TensorFlow pins its own numpy; the era's bounds on the rest keep within it.
_TENSORFLOW_STACKS = (
    ("0", ("pandas<2", "scikit-learn<1.2", "scipy<1.11", "Pillow<10")),
    ("2.12", ("pandas<2.2", "scikit-learn<1.4", "scipy<1.12", "Pillow<11")),
    ("2.16", ("pandas<2.3", "scikit-learn<1.6", "scipy<1.15", "Pillow<12")),
    ("2.19", ("pandas<3", "scikit-learn<1.8", "scipy<1.17", "Pillow<12")),
)

# transformers release → (datasets, accelerate) in AWS's Hugging Face container of that release
# (the latest build of each; the PyTorch 1.13 container had no accelerate pin: the one of its day).
HUGGINGFACE = {
    "4.26.0": ("3.0.1", "0.16.0"),
    "4.28.1": ("2.15.0", "0.19.0"),
    "4.36.0": ("2.18.0", "0.26.0"),
    "4.37.0": ("2.18.0", "0.26.0"),
    "4.46.1": ("3.1.0", "1.1.0"),
    "4.48.0": ("3.1.0", "1.1.0"),
    "4.49.0": ("3.3.2", "1.4.0"),
    "4.51.3": ("3.5.0", "1.6.0"),
    "4.55.0": ("4.0.0", "1.4.0"),
    "4.56.2": ("4.1.0", "1.10.1"),
}
# Older transformers releases need a tokenizers release with no wheels for this Python.
HUGGINGFACE_FLOOR = "4.26.0"

# datasets release → the pyarrow releases it works with. pyarrow keeps removing what older datasets
# use (PyExtensionType is gone; datasets 2.15's array features fail on pyarrow 26 with
# "to_pylist() got an unexpected keyword argument"). The bound is the first pyarrow major released
# after that datasets release.
_PYARROW_FOR_DATASETS = {
    "2.15.0": "pyarrow<15",
    "2.18.0": "pyarrow<16",
    "3.0.1": "pyarrow<18",
    "3.1.0": "pyarrow<19",
    "3.3.2": "pyarrow<20",
    "3.5.0": "pyarrow<20",
    "4.0.0": "pyarrow<22",
    "4.1.0": "pyarrow<22",
}


def pytorch_packages(version: str) -> tuple[str, ...]:
    """What a PyTorch container of ``version`` carries besides torch (and torchvision)."""
    return (*_era(_PYTORCH_STACKS, version), *_DL_EXTRAS, *COMMON)


def tensorflow_packages(version: str) -> tuple[str, ...]:
    """What a TensorFlow container of ``version`` carries besides TensorFlow."""
    return (*_era(_TENSORFLOW_STACKS, version), *_DL_EXTRAS, *COMMON)


def huggingface_packages(transformers: str, *, pytorch: bool = True) -> tuple[tuple[str, ...], str | None]:
    """The Hugging Face libraries of the container with ``transformers``, and a note when the
    release installed is not the one named. Only the PyTorch containers carry accelerate (it
    requires torch, which a TensorFlow environment would otherwise pull from the index)."""
    note = None
    release = transformers
    if vkey(transformers) < vkey(HUGGINGFACE_FLOOR):
        release = HUGGINGFACE_FLOOR
        note = (
            f"transformers {transformers} does not install on this Python (its tokenizers has no wheels "
            f"for it); using transformers {release}, the nearest release that does"
        )
    known = [k for k in HUGGINGFACE if vkey(k) <= vkey(release)]
    row = max(known, key=vkey)
    datasets, accelerate = HUGGINGFACE[row]
    if vkey(row) != vkey(release):
        extra = (
            f"transformers {release} is not a release Shipyard knows AWS's container of; "
            f"datasets {datasets} (and accelerate {accelerate}) are those of its transformers {row} container"
        )
        note = f"{note}; {extra}" if note else extra
    packages = (
        f"transformers=={release}",
        f"datasets=={datasets}",
        *((f"accelerate=={accelerate}",) if pytorch else ()),
        _PYARROW_FOR_DATASETS[datasets],
    )
    return packages, note


def torchvision_for(torch: str) -> str:
    """The torchvision minor release built for a torch release ("2.13.0+cpu" → "0.28")."""
    major, minor = vkey(torch)[:2]
    return f"0.{minor + 15}" if major >= 2 else f"0.{minor + 1}"


def vkey(version: str) -> tuple[int, ...]:
    """A version as numbers to compare, zero-padded ("4.36" == "4.36.0"), its local label dropped."""
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])]
    return tuple(parts + [0] * (3 - len(parts)))


def _era(stacks: tuple[tuple[str, tuple[str, ...]], ...], version: str) -> tuple[str, ...]:
    found = stacks[0][1]
    for since, packages in stacks:
        if vkey(since) <= vkey(version):
            found = packages
    return found
