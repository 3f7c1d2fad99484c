"""Environment keys: servers in different venvs of one interpreter share a cached environment, and
one cached under the older key (the server's venv interpreter) is still used, not built again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import shipyard.envs._bytecode
from shipyard.envs import EnvironmentCache, EnvironmentSpec
from shipyard.envs._cache import MARKER

SPEC = EnvironmentSpec("sklearn", ("scikit-learn==1.2.1",))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EnvironmentCache:
    def run(command: list[str], log: Any) -> None:  # uv, as far as the build looks at what it did
        if command[1] == "venv":
            Path(command[-1]).mkdir(parents=True)

    monkeypatch.setattr(EnvironmentCache, "_run", staticmethod(run))
    monkeypatch.setattr(shipyard.envs._bytecode, "compile_soon", lambda root, key: None)
    return EnvironmentCache(tmp_path / "envs", allow_server_python=False)


def test_servers_in_two_venvs_of_one_python_share_an_environment(
    cache: EnvironmentCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/checkouts/one/.venv/bin/python")
    first = cache.resolve(SPEC, log=lambda line: None)
    monkeypatch.setattr(sys, "executable", "/checkouts/two/.venv/bin/python")
    second = cache.resolve(SPEC, log=lambda line: None)
    assert (first.how, second.how) == ("built", "cached")
    assert first.key == second.key


def test_an_environment_cached_under_the_older_key_is_used_as_it_is(
    cache: EnvironmentCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/checkouts/one/.venv/bin/python")
    legacy = SPEC.key(python_version=f"{sys.executable} {sys.version}")
    (cache.root / legacy).mkdir(parents=True)
    (cache.root / legacy / MARKER).write_text("{}")
    resolved = cache.resolve(SPEC, log=lambda line: None)
    assert (resolved.how, resolved.key) == ("cached", legacy)
    assert [p.name for p in cache.root.iterdir() if p.is_dir()] == [legacy]  # nothing built beside it
