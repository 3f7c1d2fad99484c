"""A job without requirements.txt runs in the server's own Python when it has every pinned package:
the check reads what is installed as importlib.metadata would find it."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

from shipyard.envs import satisfied_here


def _dist(folder: Path, name: str, version: str, kind: str = "dist-info") -> None:
    info = folder / (
        f"{name}-{version}.{kind}" if kind == "dist-info" else f"{name}-{version}-py3.11.egg-info"
    )
    info.mkdir(parents=True)
    text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    (info / ("METADATA" if kind == "dist-info" else "PKG-INFO")).write_text(text)


def test_the_first_distribution_on_the_path_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "scikit_learn", "1.2.2")
    _dist(second, "scikit_learn", "1.4.2")
    _dist(second, "Tabulate", "0.9.0")
    _dist(first, "legacy", "2.0", kind="egg-info")  # its version from its metadata
    monkeypatch.setattr(sys, "path", [str(first), str(second), str(tmp_path / "missing")])
    assert satisfied_here(["scikit-learn==1.2.2", "tabulate>=0.9", "legacy==2.0"])
    assert not satisfied_here(["scikit-learn==1.4.2"])
    assert not satisfied_here(["numpy"])
    assert not satisfied_here(["not a requirement =="])


def test_it_agrees_with_importlib_metadata_here() -> None:
    installed = [(d.metadata["Name"], d.version) for d in metadata.distributions()][:40]
    assert installed
    for name, version in installed:
        assert satisfied_here([f"{name}=={metadata.version(name)}"]), (name, version)


def test_a_package_not_on_the_path_is_not_looked_up_in_every_metadata_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # importlib.metadata parses every distribution to say a package is missing: tens of
    # milliseconds of each job that asks for a framework the server's Python lacks
    _dist(tmp_path, "numpy", "2.1.0")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    looked_up: list[str] = []
    monkeypatch.setattr(metadata, "version", lambda name: looked_up.append(name) or "0")
    assert not satisfied_here(["numpy", "scikit-learn==1.2.2"])
    assert looked_up == []
