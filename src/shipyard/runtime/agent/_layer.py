"""A job's own pip layer over its shared environment.

The environment a job runs in (envs/) is shared by every job that needs it and read-only in the
sandbox, yet SageMaker code runs ``pip install`` in the job: the sagemaker SDK v3's driver
installs ``SourceCode(requirements=...)``, a remote function's bootstrap upgrades the SDK, scripts
install what they lack. Each instance therefore gets a virtual environment of its own in its
folder (``/opt/ml/.shipyard-layer``): no packages of its own at first, a ``.pth`` file that adds the
shared environment's site-packages behind its own (``site.addsitedir``, so the shared
environment's own ``.pth`` files count too), and ``pip`` scripts running the shared environment's
pip with the layer's interpreter. pip then sees what the shared environment has ("Requirement
already satisfied") and installs only what is new or another version into the layer, which comes
first on ``sys.path``; it never uninstalls from the shared environment (outside the layer's
prefix). ``python``, ``pip`` and ``VIRTUAL_ENV`` in the job name the layer, and the job's command
runs with its interpreter, so what the job installs is what it imports.

The shared environment's own console scripts (``torchrun``, whose workers run with its
interpreter) are copied into the layer with their ``#!`` line naming the layer's interpreter, so
what they start sees the layer's packages too (a v3 ``Torchrun`` job with requirements).

It is small files and links (no interpreter is started: a few milliseconds), so every training and
processing instance gets one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path, PurePosixPath

LAYER = ".shipyard-layer"  # in ml/ (/opt/ml)
_PTH = "_shipyard_shared_environment.pth"
_SCRIPT_BYTES = 64 * 1024  # console scripts are a few lines; binaries and the like are left alone
_PIP = """#!{python}
# Shipyard: the shared environment's pip, run by this job's layer (/opt/ml/.shipyard-layer), so
# that it installs into the layer and leaves the shared environment as it is.
import sys
from pip._internal.cli.main import main
sys.exit(main())
"""


@dataclasses.dataclass(frozen=True)
class PipLayer:
    """Where the layer is as the job sees it (under /opt/ml in the sandbox)."""

    prefix: PurePosixPath

    @property
    def bin(self) -> PurePosixPath:
        return self.prefix / "bin"

    @property
    def python(self) -> str:
        return str(self.bin / "python")


@dataclasses.dataclass(frozen=True)
class _Shared:
    executable: Path  # the interpreter the shared environment's python links to
    version: str  # "3.11"
    site_packages: Path | None  # the shared venv's own; None: the interpreter's (system site)
    system_site: bool
    pip: bool


def make_layer(ml: Path, root: PurePosixPath, python: Path) -> PipLayer:
    """The layer for the shared environment whose interpreter is ``python``, created in ``ml``
    (``root`` is where ``ml`` appears to the job)."""
    shared = _inspect(python)
    folder = ml / LAYER
    (folder / "bin").mkdir(parents=True, exist_ok=True)
    site = folder / "lib" / f"python{shared.version}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    (folder / "pyvenv.cfg").write_text(
        f"home = {shared.executable.parent}\n"
        f"include-system-site-packages = {'true' if shared.system_site else 'false'}\n"
        f"version = {shared.version}\n"
        "shipyard = a job's own layer over its shared environment\n"
    )
    if shared.site_packages is not None:
        (site / _PTH).write_text(f"import site; site.addsitedir({str(shared.site_packages)!r})\n")
    for name in ("python", "python3", f"python{shared.version}"):
        link = folder / "bin" / name
        if not link.is_symlink():
            link.symlink_to(shared.executable)
    layer = PipLayer(root / LAYER)
    _rebind_scripts(python, folder / "bin", layer.python)
    if shared.pip:
        script = _PIP.format(python=layer.python)
        for name in ("pip", "pip3", f"pip{shared.version}"):
            path = folder / "bin" / name
            path.write_text(script)
            path.chmod(0o755)
    return layer


def _rebind_scripts(python: Path, into: Path, layer_python: str) -> None:
    """The shared environment's console scripts whose ``#!`` line names its interpreter, copied
    into the layer's bin/ naming the layer's instead (pip's are written apart)."""
    shebang = f"#!{python}\n".encode()
    with os.scandir(python.parent) as entries:
        for entry in entries:
            if entry.name.startswith(("python", "pip", "activate")) or not entry.is_file():
                continue
            try:
                with open(entry.path, "rb") as script:
                    if script.read(len(shebang)) != shebang:
                        continue
                    rest = script.read(_SCRIPT_BYTES)
            except OSError:
                continue
            if len(rest) == _SCRIPT_BYTES:  # not a console script
                continue
            target = os.open(into / entry.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
            try:
                os.write(target, f"#!{layer_python}\n".encode() + rest)
            finally:
                os.close(target)


def _inspect(python: Path) -> _Shared:
    """What the layer needs of the shared environment, read from its files (its ``pyvenv.cfg``)
    when it is a virtual environment, else asked of the interpreter once."""
    executable = Path(os.path.realpath(python))
    config = python.parent.parent / "pyvenv.cfg"
    if config.is_file():
        values = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (line.partition("=") for line in config.read_text().splitlines())
        )
        version = values.get("version_info") or values.get("version") or ""
        match = re.match(r"(\d+)\.(\d+)", version)
        if match:
            site = python.parent.parent / "lib" / f"python{match[1]}.{match[2]}" / "site-packages"
            if site.is_dir():
                return _Shared(
                    executable,
                    f"{match[1]}.{match[2]}",
                    site,
                    values.get("include-system-site-packages", "false").lower() == "true",
                    (site / "pip" / "__init__.py").is_file(),
                )
    # Not a venv (a site's own Python): the layer includes its site-packages as system ones.
    answer = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, importlib.util as u; "
            "print('%d.%d' % sys.version_info[:2], u.find_spec('pip') is not None)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return _Shared(executable, answer[0], None, True, answer[1] == "True")
