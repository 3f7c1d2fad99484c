from pathlib import Path

from shipyard.runtime._sandbox import sandbox_command


def test_kept_environment_is_bound_back_after_the_private_tmp_and_hidden_data_dir(tmp_path: Path) -> None:
    venv = tmp_path / "clone" / ".venv"
    args = sandbox_command(
        [str(venv / "bin" / "python"), "train.py"],
        ml_dir=tmp_path / "ml",
        host="algo-2",
        hosts_file=tmp_path / "hosts",
        hide=[tmp_path / "data"],
        keep=[venv],
        cwd="/opt/ml/code",
    )
    joined = " ".join(args)
    assert joined.index("--tmpfs /tmp") < joined.index(f"--tmpfs {tmp_path / 'data'}")
    assert joined.index(f"--tmpfs {tmp_path / 'data'}") < joined.index(f"--ro-bind {venv} {venv}")
    assert joined.index(f"--ro-bind {venv} {venv}") < joined.index(f"--bind {tmp_path / 'ml'} /opt/ml")
    assert "--hostname algo-2" in joined and "--unshare-pid" in args
    assert args[-2:] == [str(venv / "bin" / "python"), "train.py"]
