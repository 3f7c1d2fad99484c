import re
from pathlib import Path

import pytest

from shipyard.config import Settings, is_loopback
from shipyard.errors import ConfigurationError
from shipyard.runtime import _sandbox


def test_defaults_put_everything_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.load({"data_dir": tmp_path}, environ={})
    assert settings.host == "127.0.0.1"
    assert settings.database_url == f"sqlite:///{tmp_path}/shipyard.db"
    assert settings.data_dir == tmp_path


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[server]\nport = 9000\nregion = "eu-west-1"\nlog-level = "debug"\n'
    )
    env = {"SHIPYARD_HOME": str(tmp_path), "SHIPYARD_PORT": "9100"}
    settings = Settings.load({"port": None}, environ=env)
    assert (settings.port, settings.region, settings.log_level) == (9100, "eu-west-1", "debug")
    assert Settings.load({"port": 9200}, environ=env).port == 9200


def test_config_file_errors_name_the_setting(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("colour = 'blue'\n")
    with pytest.raises(ConfigurationError, match="unknown setting 'colour'"):
        Settings.load({"data_dir": tmp_path}, environ={})
    (tmp_path / "config.toml").write_text("port = 'many'\n")
    with pytest.raises(ConfigurationError, match="port must be an integer, got 'many'"):
        Settings.load({"data_dir": tmp_path}, environ={})
    with pytest.raises(ConfigurationError, match="does not exist"):
        Settings.load({}, environ={"SHIPYARD_CONFIG": str(tmp_path / "nope.toml")})


def test_env_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SHIPYARD_PORT: port must be an integer, got 'x'"):
        Settings.load({"data_dir": tmp_path}, environ={"SHIPYARD_PORT": "x"})


def test_public_bind_requires_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sandbox, "sandbox_available", lambda: True)  # see test_settings_security
    with pytest.raises(
        ConfigurationError, match=r"Refusing to bind host '0\.0\.0\.0' without authentication"
    ):
        Settings(host="0.0.0.0", data_dir=tmp_path).check_bind_allowed()
    Settings(host="0.0.0.0", data_dir=tmp_path, access_key_id="k", secret_access_key="s").check_bind_allowed()
    Settings(host="::1", data_dir=tmp_path).check_bind_allowed()
    with pytest.raises(ConfigurationError, match="must be set together"):
        Settings(data_dir=tmp_path, access_key_id="k")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_ray_backend_needs_an_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="backend is 'ray' but ray_address is not"):
        Settings.load({"data_dir": tmp_path, "backend": "ray"}, environ={})
    with pytest.raises(ConfigurationError, match="ray_instance_types is set but ray_address is not"):
        Settings.load({"data_dir": tmp_path}, environ={"SHIPYARD_RAY_INSTANCE_TYPES": "ml.g*"})
    with pytest.raises(ConfigurationError, match="backend must be 'local', 'ray' or 'slurm', got 'k8s'"):
        Settings.load({"data_dir": tmp_path, "backend": "k8s"}, environ={})
    settings = Settings.load(
        {"data_dir": tmp_path}, environ={"SHIPYARD_BACKEND": "ray", "SHIPYARD_RAY_ADDRESS": "10.0.0.5:6379"}
    )
    assert (settings.backend, settings.ray_address) == ("ray", "10.0.0.5:6379")


def test_the_slurm_site_table_comes_from_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'backend = "slurm"\nslurm_account = "lab-smith"\n'
        '[slurm_types."ml.g5.*"]\npartition = "gpu"\ngres = "gpu:a10g:1"\n'
    )
    settings = Settings.load({"data_dir": tmp_path}, environ={})
    site = settings.slurm_site
    assert (site.account, site.row("ml.g5.xlarge").partition, site.row("ml.m5.large").partition) == (
        "lab-smith",
        "gpu",
        None,
    )


def test_a_bad_slurm_setting_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("slurm.qos must be a Slurm name")):
        Settings.load({"data_dir": tmp_path}, environ={"SHIPYARD_SLURM_QOS": "a b"})
    (tmp_path / "config.toml").write_text('[slurm_types."ml.g5.*"]\nmem = 4\n')
    with pytest.raises(ConfigurationError, match=re.escape("slurm_types.'ml.g5.*': unknown key 'mem'")):
        Settings.load({"data_dir": tmp_path}, environ={})
