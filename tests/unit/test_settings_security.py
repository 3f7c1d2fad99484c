"""Settings that would leave the server open are errors at start: empty, blank or partial
credentials in any source, and a non-loopback bind while jobs would run unsandboxed (the sandbox
probe replaced by a fake, so the rule is tested on any machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import Settings
from shipyard.errors import ConfigurationError
from shipyard.runtime import _sandbox
from shipyard.server import run, sandbox_notice

KEYS = {"SHIPYARD_ACCESS_KEY_ID": "AKIDSITE", "SHIPYARD_SECRET_ACCESS_KEY": "site-secret"}
NO_BWRAP = "bubblewrap (bwrap) is not installed: install the 'bubblewrap' package"


@pytest.fixture
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sandbox, "sandbox_available", lambda: False)
    monkeypatch.setattr(_sandbox, "sandbox_problem", lambda: NO_BWRAP)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sandbox, "sandbox_available", lambda: True)
    monkeypatch.setattr(_sandbox, "sandbox_problem", lambda: None)


# -- credentials --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"SHIPYARD_ACCESS_KEY_ID": "", "SHIPYARD_SECRET_ACCESS_KEY": ""},
            "access_key_id (from environment variable SHIPYARD_ACCESS_KEY_ID) is empty",
        ),
        (
            {"SHIPYARD_ACCESS_KEY_ID": "AKIDSITE", "SHIPYARD_SECRET_ACCESS_KEY": ""},
            "secret_access_key (from environment variable SHIPYARD_SECRET_ACCESS_KEY) is empty",
        ),
        (
            {"SHIPYARD_ACCESS_KEY_ID": "AKIDSITE", "SHIPYARD_SECRET_ACCESS_KEY": "  \t"},
            "secret_access_key (from environment variable SHIPYARD_SECRET_ACCESS_KEY) is blank",
        ),
        (
            {"SHIPYARD_SECRET_ACCESS_KEY": "site-secret"},
            "access_key_id and secret_access_key must be set together: secret_access_key is set (from "
            "environment variable SHIPYARD_SECRET_ACCESS_KEY) but access_key_id is not",
        ),
        (
            {"SHIPYARD_ACCESS_KEY_ID": " AKIDSITE", "SHIPYARD_SECRET_ACCESS_KEY": "site-secret"},
            "access_key_id (from environment variable SHIPYARD_ACCESS_KEY_ID) has leading or trailing",
        ),
        (
            {"SHIPYARD_S3_ACCESS_KEY_ID": "minio", "SHIPYARD_S3_SECRET_ACCESS_KEY": ""},
            "s3_secret_access_key (from environment variable SHIPYARD_S3_SECRET_ACCESS_KEY) is empty",
        ),
        (
            {"SHIPYARD_S3_ACCESS_KEY_ID": "minio"},
            "s3_access_key_id and s3_secret_access_key must be set together: s3_access_key_id is set",
        ),
    ],
)
def test_empty_blank_or_partial_credentials_in_the_environment_are_an_error(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.load({"data_dir": tmp_path}, environ=environ)
    assert message in refused.value.message


def test_an_empty_key_in_the_config_file_names_the_file_and_the_setting(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('access_key_id = "AKIDSITE"\nsecret_access_key = ""\n')
    with pytest.raises(ConfigurationError) as refused:
        Settings.load({"data_dir": tmp_path}, environ={})
    assert f"secret_access_key (from config file {str(tmp_path / 'config.toml')!r}) is empty" in (
        refused.value.message
    )


def test_half_a_pair_in_the_config_file_names_where_it_was_set(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[server]\ns3_secret_access_key = "minio-secret"\n')
    with pytest.raises(ConfigurationError) as refused:
        Settings.load({"data_dir": tmp_path}, environ={"SHIPYARD_CONFIG": str(config)})
    assert refused.value.message == (
        "s3_access_key_id and s3_secret_access_key must be set together: s3_secret_access_key is set "
        f"(from config file {str(config)!r}) but s3_access_key_id is not (set SHIPYARD_S3_ACCESS_KEY_ID "
        "or s3_access_key_id in the config file)"
    )


def test_an_empty_flag_and_an_empty_direct_value_are_errors_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"flag --secret-access-key\) is empty"):
        Settings.load({"data_dir": tmp_path, "secret_access_key": ""}, environ=KEYS)
    with pytest.raises(ConfigurationError, match=r"^secret_access_key is blank"):
        Settings(data_dir=tmp_path, access_key_id="AKIDSITE", secret_access_key=" ")


def test_a_pair_from_two_sources_and_no_credentials_at_all_both_load(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('secret_access_key = "site-secret"\n')
    settings = Settings.load({"data_dir": tmp_path}, environ={"SHIPYARD_ACCESS_KEY_ID": "AKIDSITE"})
    assert settings.auth_enabled and settings.access_key_id == "AKIDSITE"
    assert not Settings.load({"data_dir": tmp_path / "other"}, environ={}).auth_enabled
    # Other settings left empty in the environment still mean "not set", as before.
    assert Settings.load({"data_dir": tmp_path / "other"}, environ={"SHIPYARD_HOST": ""}).host == "127.0.0.1"


# -- the bind rule ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("no_sandbox")
def test_a_public_bind_with_jobs_unsandboxed_is_refused_unless_the_site_says_off(tmp_path: Path) -> None:
    public = Settings.load({"data_dir": tmp_path, "host": "0.0.0.0"}, environ=KEYS)
    with pytest.raises(ConfigurationError) as refused:
        public.check_bind_allowed()
    assert refused.value.message.startswith(
        f"Refusing to bind host '0.0.0.0' with jobs unsandboxed ({NO_BWRAP})"
    )
    assert 'sandbox = "off" (SHIPYARD_SANDBOX=off)' in refused.value.message
    Settings.load(
        {"data_dir": tmp_path, "host": "0.0.0.0"}, environ={**KEYS, "SHIPYARD_SANDBOX": "off"}
    ).check_bind_allowed()
    Settings.load({"data_dir": tmp_path, "host": "127.0.0.1"}, environ=KEYS).check_bind_allowed()
    Settings(data_dir=tmp_path, host="::1").check_bind_allowed()  # loopback needs neither


@pytest.mark.usefixtures("sandbox")
def test_a_public_bind_with_credentials_and_the_sandbox_is_allowed(tmp_path: Path) -> None:
    Settings.load({"data_dir": tmp_path, "host": "10.0.0.5"}, environ=KEYS).check_bind_allowed()
    with pytest.raises(ConfigurationError, match="without authentication"):
        Settings(data_dir=tmp_path, host="10.0.0.5").check_bind_allowed()


@pytest.mark.usefixtures("no_sandbox")
def test_shipyard_server_refuses_before_it_binds(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="with jobs unsandboxed"):
        run(Settings.load({"data_dir": tmp_path, "host": "0.0.0.0"}, environ=KEYS))
    assert not (tmp_path / "server.json").exists()  # it never served


def test_the_start_line_says_when_jobs_run_unsandboxed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sandbox, "sandbox_available", lambda: True)
    assert sandbox_notice(Settings(data_dir=tmp_path)) is None
    assert sandbox_notice(Settings(data_dir=tmp_path, sandbox="off")) == (
        'Jobs run unsandboxed (sandbox = "off" is set): each can read and change what the server\'s user can.'
    )
    monkeypatch.setattr(_sandbox, "sandbox_available", lambda: False)
    monkeypatch.setattr(_sandbox, "sandbox_problem", lambda: NO_BWRAP)
    line = sandbox_notice(Settings(data_dir=tmp_path))
    assert line is not None and "\n" not in line
    assert line.startswith(f"Jobs run unsandboxed ({NO_BWRAP})")
    assert line.endswith('only loopback addresses may be served so (sandbox = "off" allows others).')
    assert sandbox_notice(Settings(data_dir=tmp_path, sandbox="bwrap")) is None  # the start fails instead
