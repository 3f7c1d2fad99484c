"""A conda environment.yml as pip requirements, or a refusal naming each package pip cannot install."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.envs._conda import CondaEnvironmentRefused, pip_requirements
from shipyard.errors import ValidationError

SITE = "3.11.9"


def test_conda_specs_and_the_pip_section_become_pip_requirements() -> None:
    plan = pip_requirements(
        """
name: churn
channels: [conda-forge, defaults]
dependencies:
  - python=3.11
  - pip
  - numpy=1.26
  - pandas 2.1
  - scikit-learn>=1.3,<1.6
  - scipy==1.11.4=py311h64a7726_0
  - conda-forge::pyarrow=14.0.*
  - pytorch::pytorch>=2.1
  - py-xgboost
  - requests
  - pip:
      - tabulate==0.9.0
      - "# a comment"
      - boto3>=1.28
""",
        python_version=SITE,
    )
    assert plan.requirements == (
        "numpy==1.26.*",
        "pandas==2.1.*",
        "scikit-learn>=1.3,<1.6",
        "scipy==1.11.4",
        "pyarrow==14.0.*",
        "torch>=2.1",
        "xgboost",
        "requests",
        "tabulate==0.9.0",
        "boto3>=1.28",
    )
    assert plan.notes == ("pip: pip is already in the environment",)


@pytest.mark.parametrize("spec", ["python", "python=3.11", "python>=3.9", "python=3.11.9", "python 3.11"])
def test_a_python_the_site_has_is_accepted(spec: str) -> None:
    assert pip_requirements(f"dependencies: [{spec!r}]", python_version=SITE).requirements == ()


def test_everything_pip_cannot_install_is_refused_at_once_each_named() -> None:
    with pytest.raises(CondaEnvironmentRefused) as refused:
        pip_requirements(
            """
dependencies:
  - python=3.10
  - cudatoolkit=11.8
  - r-base=4.3
  - libgcc-ng
  - bioconda::samtools=1.17
  - numpy>=1.2|<1.0
  - numpy=1.26
  - pip:
      - -r extra.txt
""",
            python_version=SITE,
            source="environment.yml",
        )
    error = refused.value
    assert [r.package for r in error.refused] == [
        "python=3.10",
        "cudatoolkit=11.8",
        "r-base=4.3",
        "libgcc-ng",
        "bioconda::samtools=1.17",
        "numpy>=1.2|<1.0",
        "-r extra.txt",
    ]
    assert "the site's Python is 3.11.9" in error.message and "'bioconda'" in error.message
    assert "cudatoolkit=11.8 (a conda-only package" in error.message
    assert error.field == "dependencies" and isinstance(error, ValidationError)


def test_what_is_not_an_environment_file_says_so() -> None:
    with pytest.raises(ValidationError, match="is not YAML"):
        pip_requirements("dependencies: [", python_version=SITE)
    with pytest.raises(ValidationError, match="dependencies: list"):
        pip_requirements("dependencies: numpy", python_version=SITE)
    assert pip_requirements("", python_version=SITE).requirements == ()


def test_a_remote_functions_environment_yml_is_found_where_the_sdk_ships_it(tmp_path: Path) -> None:
    import subprocess
    import zipfile

    from shipyard.runtime.agent._conda import conda_requirements, path_entry
    from shipyard.runtime.agent._io import JobInputError

    ml = tmp_path / "ml"
    (ml / "input" / "data" / "sm_rf_user_ws").mkdir(parents=True)
    with zipfile.ZipFile(ml / "input" / "data" / "sm_rf_user_ws" / "workspace.zip", "w") as workspace:
        workspace.writestr(
            "sagemaker_remote_function_workspace/environment.yml", "dependencies: [numpy=1.26]"
        )
        workspace.writestr("sagemaker_remote_function_workspace/config.yaml", "dependencies: numpy")
    arguments = [
        "--client_python_version",
        "3.11",
        "--dependency_settings",
        '{"dependency_file": "environment.yml"}',
    ]
    assert conda_requirements(ml, arguments[:2]) == ""  # none named: nothing read, no conda
    assert path_entry(ml, Path("/opt/ml")) is None
    logged: list[str] = []
    assert conda_requirements(ml, arguments, logged.append) == "numpy==1.26.*\n"
    assert logged == ["Shipyard: environment.yml installed with pip: numpy==1.26.*"]
    assert path_entry(ml, Path("/opt/ml")) == "/opt/ml/.shipyard-bin"
    conda = str(ml / ".shipyard-bin" / "conda")
    ran = subprocess.run(
        [conda, "run", "-n", "sagemaker-runtime-env", "echo", "in", "env"], capture_output=True, text=True
    )
    assert (ran.returncode, ran.stdout) == (0, "in env\n")
    created = subprocess.run(
        [conda, "env", "create", "-n", "x", "--file", "environment.yml"], capture_output=True, text=True
    )
    assert created.returncode == 0 and "installed with pip" in created.stdout
    other = subprocess.run([conda, "install", "numpy"], capture_output=True, text=True)
    assert other.returncode == 1 and "there is no conda here" in other.stderr

    bad = ["--dependency_settings", '{"dependency_file": "config.yaml"}']
    with pytest.raises(JobInputError, match="not a conda environment file"):
        conda_requirements(ml, bad)


def test_a_step_functions_environment_yml_is_read_from_its_channel(tmp_path: Path) -> None:
    from shipyard.runtime.agent._conda import conda_requirements

    channel = tmp_path / "input" / "data" / "pre_exec_script_and_dependencies"
    channel.mkdir(parents=True)
    (channel / "env.yaml").write_text("dependencies:\n  - pip:\n    - tabulate==0.9.0\n")
    arguments = ["--dependency_settings", '{"dependency_file": "env.yaml"}']
    assert conda_requirements(tmp_path, arguments) == "tabulate==0.9.0\n"
    assert conda_requirements(tmp_path, ["--dependency_settings", '{"dependency_file": "../env.yaml"}']) == ""
