"""A remote function's conda ``environment.yml`` (the sagemaker SDK's ``@remote``/``@step`` with
``dependencies="environment.yml"``, or its auto-captured ``env_snapshot.yml``), without conda.

The SDK names the file in the job's arguments (``--dependency_settings {"dependency_file": ...}``)
and ships it in the ``sm_rf_user_ws`` channel's ``workspace.zip`` (``@remote``) or the
``pre_exec_script_and_dependencies`` channel (``@step``); its bootstrap in the job then runs
``conda env create -n sagemaker-runtime-env --file <it>`` (``mamba`` first) and the function with
``conda run -n sagemaker-runtime-env python ...``. Here the agent reads the file before the
environment is resolved: what pip can install of it joins the job's requirements (envs/_conda.py
decides), what it cannot fails the job with ClientError naming each package; and a ``conda`` on
the job's PATH answers the bootstrap: ``env create``/``env update`` say the packages are
installed, ``run -n <env> <command>`` runs the command in the job's environment.
"""

from __future__ import annotations

import itertools
import json
import platform
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath

from shipyard.envs._conda import pip_requirements
from shipyard.errors import ValidationError
from shipyard.runtime.agent._io import JobInputError

CHANNEL = "pre_exec_script_and_dependencies"  # @step's
WORKSPACE = "sm_rf_user_ws"  # @remote's: workspace.zip, the files under sagemaker_remote_function_workspace/
_IN_ZIP = "sagemaker_remote_function_workspace/"
_MAX_BYTES = 1 << 20
BIN = ".shipyard-bin"  # in ml/ (/opt/ml): the conda stand-in
_STAND_IN = """#!/bin/sh
# Shipyard's stand-in for conda in a remote function's job: the packages of its environment.yml
# that pip can install were installed before the job started (there is no conda here).
case "$1" in
  env)
    case "$2" in
      create|update) echo "Shipyard: conda env $2: its packages were installed with pip before the job started"; exit 0 ;;
    esac ;;
  run)
    shift
    while [ $# -gt 0 ]; do
      case "$1" in
        -n|--name|-p|--prefix) shift 2 ;;
        --no-capture-output|--live-stream) shift ;;
        *) break ;;
      esac
    done
    exec "$@" ;;
esac
echo "Shipyard: 'conda $*' is not available: there is no conda here (only env create, env update and run)" >&2
exit 1
"""


def dependency_file(arguments: Sequence[str]) -> str | None:
    """The conda environment file a remote function's arguments name (None: none, or a
    requirements.txt)."""
    for flag, value in itertools.pairwise(arguments):
        if flag != "--dependency_settings":
            continue
        try:
            name = json.loads(value).get("dependency_file")
        except (ValueError, AttributeError):
            return None
        if isinstance(name, str) and name.endswith((".yml", ".yaml")) and "/" not in name:
            return name
    return None


def environment_text(ml: Path, name: str) -> str | None:
    """The named environment file's text, from @step's channel or @remote's workspace.zip."""
    data = ml / "input" / "data"
    plain = data / CHANNEL / name
    if plain.is_file() and not plain.is_symlink():
        return plain.read_bytes()[:_MAX_BYTES].decode(errors="replace")
    archive = data / WORKSPACE / "workspace.zip"
    if not archive.is_file():
        return None
    try:
        with zipfile.ZipFile(archive) as workspace:
            info = workspace.getinfo(_IN_ZIP + name)
            if info.file_size > _MAX_BYTES:
                raise JobInputError(f"{name} is {info.file_size} bytes: an environment file of at most 1 MiB")
            return workspace.read(info).decode(errors="replace")
    except (KeyError, zipfile.BadZipFile):
        return None


def conda_requirements(ml: Path, arguments: Sequence[str], log: Callable[[str], None] | None = None) -> str:
    """requirements.txt lines for a remote function's conda environment file ("" when it has
    none), with the conda stand-in put in place; JobInputError naming each package pip cannot
    install."""
    name = dependency_file(arguments)
    text = environment_text(ml, name) if name else None
    if name is None or text is None:
        return ""
    try:
        plan = pip_requirements(text, python_version=platform.python_version(), source=name)
    except ValidationError as exc:
        raise JobInputError(exc.message) from None
    if log is not None:
        installed = ", ".join(plan.requirements) or "nothing to install"
        log(f"Shipyard: {name} installed with pip: {installed}")
        for note in plan.notes:
            log(f"Shipyard: {name}: {note}")
    stand_in = ml / BIN / "conda"
    stand_in.parent.mkdir(exist_ok=True)
    stand_in.write_text(_STAND_IN)
    stand_in.chmod(0o755)
    return "".join(f"{line}\n" for line in plan.requirements)


def path_entry(ml: Path, root: PurePath) -> str | None:
    """The PATH entry (as the job sees it, under ``root``) of the conda stand-in, if it is there."""
    return str(root / BIN) if (ml / BIN / "conda").is_file() else None
