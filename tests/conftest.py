"""Fixtures shared by every test tier.

Tiers (directories and markers): unit (pure, in-process), integration (real SQLite file, real
subprocesses, a server on a loopback port), compat (real boto3 and sagemaker SDK against a running
server), services (the local Postgres at 127.0.0.1:5432).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.envs._cache import EnvironmentCache
from shipyard.server import ServerProcess

POSTGRES_ADMIN_URL = os.environ.get("SHIPYARD_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")

# Every server the tests start (each module has its own data dir) shares one environment cache, as
# servers on one machine may (the envs_dir setting): a framework's environment is built and its
# bytecode compiled once, not once per module. The cache outlives the run, as pip's does, so a
# later run on the machine builds nothing (building and compiling the torch, sklearn and xgboost
# environments was much of a run's CPU); what no run used for two days is removed. It is keyed by
# the code that builds environments (src/shipyard/envs) and the Python: a change there starts a
# fresh cache. Outside /tmp, as a site's would be (the sandbox tests check that a job sees only
# its own environment there). tests/integration/test_environments.py, which watches builds, keeps
# its own. SHIPYARD_TEST_ENVS names another folder (a new empty one: a cold run).
_ROOT = Path(__file__).resolve().parents[1]


def _builder_key() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for source in sorted((_ROOT / "src" / "shipyard" / "envs").rglob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()[:16]


def _shared_envs() -> str:
    if os.environ.get("SHIPYARD_TEST_ENVS"):
        return os.environ["SHIPYARD_TEST_ENVS"]
    # Not under ~/.cache: a job's uid must reach it, and root's home is closed to it.
    caches = Path("/var/tmp") / f"shipyard-tests-{os.getuid()}"
    current = caches / f"envs-{_builder_key()}"
    caches.mkdir(mode=0o755, parents=True, exist_ok=True)
    # /var/tmp is everyone's: a folder another user made there (or may write to) would hand this
    # run's jobs environments of their choosing.
    owner = caches.stat()
    if owner.st_uid != os.getuid() or owner.st_mode & 0o022:
        raise RuntimeError(
            f"{caches} is not this user's alone (owner uid {owner.st_uid}, mode "
            f"{owner.st_mode & 0o777:o}): remove it, or set SHIPYARD_TEST_ENVS to a folder of your own"
        )
    for old in caches.glob("envs-*"):  # built by other code: not used again once a day went by
        if old != current and time.time() - old.stat().st_mtime > 86400:
            shutil.rmtree(old, ignore_errors=True)
    current.mkdir(exist_ok=True)
    os.utime(current)
    # Environments no run used for two days (another checkout's, or another test's) are removed.
    EnvironmentCache(current).prune(unused_for=dt.timedelta(days=2))
    return str(current)


if "SHIPYARD_ENVS_DIR" not in os.environ:  # else a run's controller set it (pytest-xdist)
    os.environ["SHIPYARD_ENVS_DIR"] = _shared_envs()
SHARED_ENVS = os.environ["SHIPYARD_ENVS_DIR"]


# The order test modules start in (scripts/test runs them with --no-loadscope-reorder): the tiers
# whose modules run longest first (a lesson's episodes, the v3 SDK's clients, the browser), the unit
# tests last, filling whichever worker frees up. By default pytest-xdist would start modules with
# the most tests first, which left a few minutes-long modules to run alone at the end.
_TESTS = Path(__file__).resolve().parent
_TIER_ORDER = ("compat_v3", "compat", "e2e", "integration", "security", "unit")


def _tier_rank(item: pytest.Item) -> int:
    tier = Path(str(item.path)).relative_to(_TESTS).parts[0]
    return _TIER_ORDER.index(tier) if tier in _TIER_ORDER else len(_TIER_ORDER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_tier_rank)  # stable: each module's tests stay together, in their order
    for item in items:
        path = str(item.path)
        for tier in ("integration", "compat"):
            if f"/tests/{tier}/" in path:
                item.add_marker(getattr(pytest.mark, tier))
                item.add_marker(pytest.mark.usefixtures("_sdk_looks_often"))


@pytest.fixture
def _sdk_looks_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sagemaker SDK's waits cut short as ``import shipyard.connector`` cuts them, in every
    test (those that do not import the connector too: they prove the SDK works without it, not that
    it waits 5-30 s between looks). Most of each ``fit()`` was the SDK sleeping: 55 s of
    tests/compat/test_training_sdk.py's 98 s. It sends the same requests in the same order, sooner."""
    try:
        import sagemaker.session
    except ImportError:  # tests that need the SDK say so themselves
        return
    from shipyard.connector import _QuickTime

    monkeypatch.setattr(sagemaker.session, "time", _QuickTime())


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the user's ~/.shipyard or AWS configuration."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("SHIPYARD_HOME", str(home / ".shipyard"))
    monkeypatch.delenv("SHIPYARD_CONFIG", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One Shipyard server (SQLite, local object store) for the whole session."""
    data_dir = tmp_path_factory.mktemp("server-data")
    with ServerProcess(data_dir) as proc:
        yield proc


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh Postgres database for this test session, dropped at the end."""
    import sqlalchemy as sa

    admin = sa.create_engine(
        POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    name = f"shipyard_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(
            f"Postgres at {POSTGRES_ADMIN_URL} is needed for the store tests and is not reachable: {exc}"
        )
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
