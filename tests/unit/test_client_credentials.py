"""Which key the SDK and CLI sign with (find_credentials, in its order), and how a native API call
is signed (NativeAuth: SigV4 the server verifies, the secret never sent)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from shipyard.api._auth import parse_sigv4, verify_sigv4
from shipyard.errors import AuthenticationError, ConfigurationError
from shipyard.sdk._connection import ANONYMOUS, NativeAuth, find_credentials, same_server

URL = "http://127.0.0.1:8300"


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (
        "SHIPYARD_ACCESS_KEY_ID",
        "SHIPYARD_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path))
    return tmp_path


def _admin_file(home: Path) -> None:
    path = home / "admin-credentials"
    path.write_text("[default]\naws_access_key_id = AKIAADMIN\naws_secret_access_key = admin-secret\n")
    os.chmod(path, 0o600)


def test_each_source_in_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_credentials(URL) is ANONYMOUS
    _admin_file(home)
    found = find_credentials(URL)
    assert (found.access_key_id, found.secret_access_key, found.source) == (
        "AKIAADMIN",
        "admin-secret",
        str(home / "admin-credentials"),
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAALICE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "alice-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://elsewhere.example")
    assert find_credentials(URL).access_key_id == "AKIAADMIN"  # AWS's key is for another endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8300/")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    found = find_credentials(URL)
    assert (found.access_key_id, found.session_token) == ("AKIAALICE", "token")
    assert "AWS_ENDPOINT_URL" in found.source
    (home / "config.toml").write_text('[client]\naccess_key_id = "from-file"\nsecret_access_key = "s"\n')
    assert find_credentials(URL).access_key_id == "from-file"
    monkeypatch.setenv("SHIPYARD_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("SHIPYARD_SECRET_ACCESS_KEY", "s")
    assert find_credentials(URL).access_key_id == "from-env"
    assert find_credentials(URL, "given", "s").source == "arguments"
    assert "admin-secret" not in repr(find_credentials(URL, "AKIAADMIN", "admin-secret"))


def test_half_a_pair_is_an_error_naming_where_it_came_from(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_ACCESS_KEY_ID", "AKIAONLY")
    with pytest.raises(ConfigurationError, match=r"access key id is given by \$SHIPYARD_ACCESS_KEY_ID but"):
        find_credentials(URL)
    monkeypatch.delenv("SHIPYARD_ACCESS_KEY_ID")
    (home / "config.toml").write_text('[client]\nsecret_access_key = "s"\n')
    with pytest.raises(ConfigurationError, match=r"given by the config file's \[client\] table"):
        find_credentials(URL)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_admin_file_this_user_cannot_read_is_passed_over(home: Path) -> None:
    _admin_file(home)
    os.chmod(home / "admin-credentials", 0)
    assert find_credentials(URL) is ANONYMOUS


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://127.0.0.1:8300", "http://127.0.0.1:8300/", True),
        ("https://Lab.Example", "https://lab.example:443", True),
        ("http://lab.example", "http://lab.example:80/", True),
        ("http://lab.example", "https://lab.example", False),
        ("http://127.0.0.1:8300", "http://localhost:8300", False),
        ("http://127.0.0.1:8300", "http://127.0.0.1:8301", False),
    ],
)
def test_same_server(a: str, b: str, same: bool) -> None:
    assert same_server(a, b) is same


def _verify(request: httpx.Request, secret: str) -> None:
    sig = parse_sigv4(request.headers, {})
    assert sig is not None
    verify_sigv4(
        sig,
        secret=secret,
        expected_access_key_id=sig.access_key_id,
        method=request.method,
        raw_path=request.url.raw_path.split(b"?")[0].decode(),
        raw_query=request.url.query.decode(),
        headers=request.headers,
        body=request.content,
    )


def test_a_native_call_is_signed_as_the_server_verifies_it() -> None:
    auth = NativeAuth(find_credentials(URL, "AKIAALICE", "alice-secret"))
    request = httpx.Request(
        "GET", f"{URL}/api/v1/costs", params=[("group_by", "user"), ("start", "2026-01-01T00:00:00+00:00")]
    )
    signed = next(auth.auth_flow(request))
    assert "alice-secret" not in str(signed.headers)
    assert signed.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAALICE/")
    _verify(signed, "alice-secret")
    with pytest.raises(AuthenticationError, match="signature does not match"):
        _verify(signed, "another-secret")
    posted = next(auth.auth_flow(httpx.Request("POST", f"{URL}/api/v1/budgets", json={"name": "lab"})))
    _verify(posted, "alice-secret")  # the body's hash is signed


@pytest.mark.parametrize(
    ("user", "bucket"),
    [
        ("alice", "shipyard-alice"),
        ("Bob.Smith", "shipyard-bob.smith"),
        ("a+b=c,d@e_f", "shipyard-a-b-c-d-e-f"),
        ("x" * 64, "shipyard-" + "x" * 54),
    ],
)
def test_a_users_bucket_is_a_valid_s3_name(user: str, bucket: str) -> None:
    from shipyard.sdk._connection import user_bucket

    assert user_bucket(user) == bucket
