"""Image URIs → environment specs: what a SageMaker framework container means, as Python packages.

The ``sagemaker`` SDK names its framework containers by ECR URI::

    683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3
    763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.1.0-gpu-py310
    763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:2.0.0-transformers4.28.1-gpu-py310-cu118-ubuntu20.04

Any account, region and partition (``.amazonaws.com.cn``) resolve the same way: the repository names
the framework, the tag its version. Each known framework version maps to pinned packages that
install on this Python, with what AWS's container of that version carries besides the framework
(envs/_containers.py); versions too old for it map to the nearest release that does, with a note
the job's log shows. Sites add their own image names (``<data dir>/images.toml``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import itertools
import json
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.version import InvalidVersion, Version

from shipyard.envs._containers import (
    COMMON,
    huggingface_packages,
    pytorch_packages,
    tensorflow_packages,
    torchvision_for,
    vkey,
)
from shipyard.errors import ConfigurationError, ValidationError

_ECR = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[a-z0-9._/-]+)"
    r"(?::(?P<tag>[A-Za-z0-9._-]+))?"
)
_TAG = re.compile(
    r"(?P<version>\d+(?:\.\d+)*(?:-\d+)?)(?:-transformers(?P<transformers>\d+(?:\.\d+)*))?"
    r"(?:-(?P<processor>cpu|gpu|neuron|neuronx|inf|inf2)[a-z0-9]*)?(?:-(?P<py>py\d+))?"
)

# The images the sagemaker SDK runs remote functions (``@remote``, a pipeline's ``@step``) in: any
# registry, any tag. They need the client's Python with the sagemaker SDK in it.
_REMOTE_FUNCTION = re.compile(
    r"(?:[^/]+/)*(?P<repo>sagemaker-base-python-\d+|sagemaker-distribution(?:-[a-z]+)?)(?::[A-Za-z0-9._-]+)?"
)

# Repository → framework. Training and inference images of a framework share its environment.
REPOSITORIES = {
    "sagemaker-scikit-learn": "sklearn",
    "sagemaker-xgboost": "xgboost",
    "xgboost": "xgboost",  # the first-party algorithm image of SDK version "1"
    "pytorch-training": "pytorch",
    "pytorch-inference": "pytorch",
    "sagemaker-pytorch": "pytorch",
    "tensorflow-training": "tensorflow",
    "tensorflow-inference": "tensorflow",
    "sagemaker-tensorflow": "tensorflow",
    "sagemaker-tensorflow-scriptmode": "tensorflow",
    "sagemaker-tensorflow-serving": "tensorflow",
    "huggingface-pytorch-training": "huggingface",
    "huggingface-pytorch-inference": "huggingface",
    "huggingface-tensorflow-training": "huggingface-tensorflow",
    "huggingface-tensorflow-inference": "huggingface-tensorflow",
}

# Moving tags AWS serves, by repository, and the version each stands for. The first-party XGBoost
# algorithm's ``xgboost:1`` and ``xgboost:latest`` (``image_uris.retrieve("xgboost", region,
# "latest")``) are its legacy 0.72 release. AWS's framework repositories publish version tags only.
MOVING_TAGS = {("xgboost", "latest"): "0.72", ("xgboost", "1"): "0.72"}

_EXAMPLE_TAGS = {
    "sklearn": "1.2-1",
    "xgboost": "1.7-1",
    "pytorch": "2.1-cpu-py310",
    "tensorflow": "2.13-cpu-py310",
    "huggingface": "2.1-transformers4.36-cpu-py310-ubuntu22.04",
    "huggingface-tensorflow": "2.11-transformers4.26-cpu-py39-ubuntu20.04",
}

# Framework version (as the SDK spells it, without the -N build suffix) → the release installed here.
# Releases older than the first with wheels for Python 3.11 map to that first one.
_SKLEARN = {"0.20": "1.1.3", "0.23": "1.1.3", "1.0": "1.1.3", "1.2": "1.2.2", "1.4": "1.4.2"}
_XGBOOST = {
    "0.90": "1.5.2",
    "1.0": "1.5.2",
    "1.2": "1.5.2",
    "1.3": "1.5.2",
    "1.5": "1.5.2",
    "1.7": "1.7.6",
    "2.0": "2.0.3",
    "2.1": "2.1.4",
    "3.0": "3.0.5",
}


def framework_of(image: str) -> str | None:
    """The framework a SageMaker image URI names ("sklearn", "xgboost", "pytorch", ...), if any."""
    match = _ECR.fullmatch(image)
    return REPOSITORIES.get(match["repo"]) if match else None


@dataclasses.dataclass(frozen=True)
class EnvironmentSpec:
    """A Python environment a job runs in.

    Attributes:
        name: Human name ("sklearn 1.2-1").
        requirements: Pinned requirement strings installed into a fresh environment.
        python: An existing interpreter to use as it is (a site-registered image), instead.
        note: What the job's log should say about the choice (e.g. a version mapped up).
        builtin: The built-in algorithm the image stands for when no script is given ("xgboost").
        sources: Where its packages come from besides the site's sources (``extra_index_urls``,
            searched first, and ``find_links``): a GPU type's CUDA builds of PyTorch. An
            environment with sources of its own is always built, never the server's Python.
    """

    name: str
    requirements: tuple[str, ...] = ()
    python: str | None = None
    note: str | None = None
    builtin: str | None = None
    sources: Mapping[str, tuple[str, ...]] | None = None

    def key(self, extra_requirements: str = "", python_version: str = "") -> str:
        """Content address of the environment: the Python it is built on, its requirements, and the
        job's requirements.txt (and its own sources, where it has some)."""
        parts: list[object] = [python_version, sorted(self.requirements), extra_requirements.strip()]
        if self.sources:
            parts.append({k: list(v) for k, v in sorted(self.sources.items())})
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> EnvironmentSpec:
        sources = data.get("sources")
        if isinstance(sources, Mapping):
            sources = {str(k): tuple(v) for k, v in sources.items()}
        return cls(**{**data, "requirements": tuple(data.get("requirements") or ()), "sources": sources})  # type: ignore[arg-type]


class ImageResolver:
    """Resolves image names to environment specs.

    Args:
        site_images: ``<data dir>/images.toml`` entries: image name → {"python": path} or
            {"requirements": [..]} / {"requirements_file": path}.
        torch_version: The PyTorch release installed for PyTorch and Hugging Face images (the CPU
            build this site provides); None to use the version the image names.
        torchvision_version: The CPU build of torchvision this site provides, if any. PyPI's Linux
            torchvision wheels are CUDA builds that do not load with a CPU torch, so without one
            (or with one built for another torch) the environment has no torchvision, and says so.
        gpu_sources: Where CUDA builds of PyTorch come from (the ``gpu_package_sources`` setting:
            index URLs and wheel folders): a PyTorch environment on a GPU type gets them instead of
            the site's CPU build. None given: GPU types get the CPU build too, and the log says so.
    """

    def __init__(
        self,
        site_images: Mapping[str, EnvironmentSpec] | None = None,
        torch_version: str | None = None,
        torchvision_version: str | None = None,
        gpu_sources: Sequence[str] = (),
    ):
        self._site = dict(site_images or {})
        self._torch = torch_version
        self._torchvision = torchvision_version
        self._gpu_sources = tuple(gpu_sources)

    @classmethod
    def load(
        cls,
        data_dir: Path,
        torch_version: str | None = None,
        torchvision_version: str | None = None,
        gpu_sources: Sequence[str] = (),
    ) -> ImageResolver:
        return cls(
            _read_site_images(data_dir / "images.toml"), torch_version, torchvision_version, gpu_sources
        )

    def known(self) -> list[str]:
        return sorted(
            {*REPOSITORIES, "sagemaker-base-python-<version>", "sagemaker-distribution", *self._site}
        )

    def resolve(
        self,
        image: str,
        *,
        field: str = "TrainingImage",
        arguments: Sequence[str] = (),
        gpus: int = 0,
        instance_type: str = "",
    ) -> EnvironmentSpec:
        """The environment ``image`` stands for; ValidationError naming what is known otherwise.
        ``arguments`` are the job's ContainerArguments (a remote function's name its client's SDK);
        ``gpus``: each instance's GPUs (of ``instance_type``), for PyTorch's build."""
        if image in self._site:
            return self._site[image]
        remote = _REMOTE_FUNCTION.fullmatch(image)
        if remote is not None:
            return _remote_function_environment(remote["repo"], client_sdk_version(arguments))
        match = _ECR.fullmatch(image)
        repo = match["repo"] if match else None
        framework = REPOSITORIES.get(repo or "")
        if match is None or framework is None:
            raise ValidationError(
                f"Unknown image {image!r}. Shipyard runs SageMaker's framework images without Docker: "
                f"{', '.join(sorted(REPOSITORIES))} (any account, region and tag the sagemaker SDK gives), "
                "and runs remote functions (@remote, @step) in sagemaker-base-python-* and "
                "sagemaker-distribution images. "
                "A container image of your own needs a container engine, and none runs on this machine; "
                "to run one here, register its name in <data dir>/images.toml with the Python packages "
                "(or the Python interpreter) it stands for.",
                field=field,
                value=image,
            )
        tag = match["tag"] or "latest"
        moving = MOVING_TAGS.get((str(repo), tag))
        if moving is not None:
            spec = self._xgboost(moving, moving)
            note = f"{repo}:{tag} is AWS's XGBoost {moving} algorithm" + (
                f"; {spec.note}" if spec.note else ""
            )
            return dataclasses.replace(spec, note=note)
        parsed = _TAG.match(tag)
        if parsed is None:
            raise ValidationError(
                f"Image {image!r}: tag {tag!r} names no {framework} version, and AWS serves no moving tag "
                f"of that name in {repo}; give a version tag as the sagemaker SDK's image_uris.retrieve does "
                f"(e.g. {_EXAMPLE_TAGS.get(framework, '1.2-1')})",
                field=field,
                value=image,
            )
        version = parsed["version"]
        minor = ".".join(version.split("-")[0].split(".")[:2])
        if framework == "sklearn":
            return self._pick(
                "sklearn",
                version,
                minor,
                _SKLEARN,
                "scikit-learn",
                ("numpy<2", "scipy<1.14", "pandas<2.2", "joblib", *COMMON),
            )
        if framework == "xgboost":
            return self._xgboost(version, minor)
        if framework == "pytorch":
            return self._pytorch(f"pytorch {version}", version, (), gpus, instance_type)
        if framework == "tensorflow":
            return self._tensorflow(f"tensorflow {version}", version, ())
        transformers = parsed["transformers"]
        if transformers is None:
            raise ValidationError(
                f"Image {image!r}: a Hugging Face tag names its transformers version",
                field=field,
                value=image,
            )
        extras, hf_note = huggingface_packages(transformers, pytorch=framework == "huggingface")
        if framework == "huggingface":
            spec = self._pytorch(
                f"huggingface transformers {transformers} (pytorch {version})",
                version,
                extras,
                gpus,
                instance_type,
            )
        else:
            spec = self._tensorflow(
                f"huggingface transformers {transformers} (tensorflow {version})", version, extras
            )
        return dataclasses.replace(spec, note=_join(hf_note, spec.note)) if hf_note else spec

    def _pick(
        self,
        name: str,
        version: str,
        minor: str,
        table: Mapping[str, str],
        package: str,
        base: tuple[str, ...],
    ) -> EnvironmentSpec:
        release = table.get(minor)
        if release is None:
            newer = [k for k in table if _vkey(k) >= _vkey(minor)]
            if not newer:
                raise ValidationError(
                    f"{name} {version} is not a version Shipyard knows; known: {', '.join(table)}",
                    field="TrainingImage",
                    value=version,
                )
            release = table[min(newer, key=_vkey)]
        note = (
            None
            if release.startswith(minor + ".")
            else (
                f"{name} {version} does not install on this Python; using {package} {release}, the nearest release that does"
            )
        )
        return EnvironmentSpec(f"{name} {version}", (f"{package}=={release}", *base), note=note)

    def _xgboost(self, version: str, minor: str) -> EnvironmentSpec:
        # xgboost 1.5 reads pandas 1.x's Int64Index (gone in pandas 2), as AWS's 1.5-1 container
        # has it; its pkg_resources comes with COMMON's setuptools
        pandas = "pandas<2" if _vkey(_XGBOOST.get(minor, "9")) < _vkey("1.6") else "pandas<2.2"
        spec = self._pick(
            "xgboost",
            version,
            minor,
            _XGBOOST,
            "xgboost",
            ("numpy<2", "scipy<1.14", pandas, "scikit-learn==1.2.2", "pyarrow<18", *COMMON),
        )
        return dataclasses.replace(spec, builtin="xgboost")

    def _pytorch(
        self, name: str, version: str, extras: tuple[str, ...], gpus: int = 0, instance_type: str = ""
    ) -> EnvironmentSpec:
        release = self._torch or version
        cpu_build = self._torch is not None and "+cpu" in self._torch
        if gpus and cpu_build and self._gpu_sources:
            return self._pytorch_on_gpus(name, version, extras, gpus, instance_type)
        note = (
            None
            if release == version
            else (f"PyTorch {version} requested; using PyTorch {release}, the CPU build this site installs")
        )
        if gpus and cpu_build:
            note = _join(
                note,
                f"{instance_type or 'this instance type'} has {_gpus(gpus)}, but this site names no source of "
                f"CUDA builds of PyTorch (the gpu_package_sources setting): PyTorch {release} is its CPU "
                "build, and the job does not use the GPUs",
            )
        vision, missing = self._torchvision_pin(release)
        packages = (f"torch=={release}", *vision, *pytorch_packages(version), *extras)
        return EnvironmentSpec(name, _unique(packages), note=_join(note, missing))

    def _pytorch_on_gpus(
        self, name: str, version: str, extras: tuple[str, ...], gpus: int, instance_type: str
    ) -> EnvironmentSpec:
        """PyTorch's CUDA build of the site's release (its version without ``+cpu``), and the
        torchvision built for it, from the site's GPU package sources (searched first)."""
        assert self._torch is not None
        release = self._torch.split("+", 1)[0]
        indexes = tuple(s for s in self._gpu_sources if s.startswith(("http://", "https://")))
        links = tuple(s for s in self._gpu_sources if s not in indexes)
        sources = {"extra_index_urls": indexes, "find_links": links}
        mapped = "" if release == version else f" (PyTorch {version} requested; this site installs {release})"
        note = (
            f"{instance_type or 'this instance type'} has {_gpus(gpus)}: PyTorch {release}'s CUDA build{mapped}, "
            f"from the site's GPU package sources ({' '.join(self._gpu_sources)})"
        )
        packages = (
            f"torch=={release}",
            f"torchvision=={torchvision_for(release)}.*",
            *pytorch_packages(version),
            *extras,
        )
        return EnvironmentSpec(f"{name} (CUDA)", _unique(packages), note=note, sources=sources)

    def _torchvision_pin(self, torch: str) -> tuple[tuple[str, ...], str | None]:
        """torchvision for ``torch``: the site's CPU build of the matching release, or, where torch
        comes from the index as the image names it, that release from the index too."""
        wanted = torchvision_for(torch)
        if self._torch is None:
            return (f"torchvision=={wanted}.*",), None
        if self._torchvision and vkey(self._torchvision)[:2] == vkey(wanted)[:2]:
            return (f"torchvision=={self._torchvision}",), None
        have = f" (it has {self._torchvision}, built for another torch)" if self._torchvision else ""
        return (), (
            f"torchvision is not installed: this site provides no CPU build of torchvision {wanted} for "
            f"torch {torch}{have}, and PyPI's Linux torchvision wheels are CUDA builds that do not load "
            f"with a CPU torch; put a torchvision-{wanted}.*+cpu wheel in the site's package_find_links "
            "to install it, or train without torchvision"
        )

    def _tensorflow(self, name: str, version: str, extras: tuple[str, ...]) -> EnvironmentSpec:
        minor = ".".join(version.split("-")[0].split(".")[:2])
        release = minor if _vkey(minor) >= _vkey("2.12") else "2.12"
        note = (
            None
            if release == minor
            else (
                f"TensorFlow {minor} does not install on this Python; using TensorFlow {release}, the nearest release that does"
            )
        )
        packages = (f"tensorflow-cpu~={release}.0", *tensorflow_packages(version), *extras)
        return EnvironmentSpec(name, _unique(packages), note=note)


SDK_V3_DEFAULT = "3.27.0"  # the sagemaker SDK v3 a v3 client's remote function gets when its own is unknown


def _gpus(count: int) -> str:
    return f"{count} GPU{'s' if count != 1 else ''}"


def client_sdk_version(arguments: Sequence[str]) -> str | None:
    """The sagemaker SDK version a remote function's client runs: both majors pass it to the job's
    bootstrap as ``--client_sagemaker_pysdk_version`` in ContainerArguments (None: not given)."""
    for flag, value in itertools.pairwise(arguments):
        if flag == "--client_sagemaker_pysdk_version":
            return value
    return None


def remote_sdk_requirement(client_version: str | None) -> str:
    """The sagemaker SDK a remote function runs with: the client's major version (a function
    pickled by v3 imports ``sagemaker.core``, which v2 lacks; v2's ``sagemaker.remote_function``
    is not in v3). A v3 client gets its own release (or, a development build or a version that is
    not one, 3.27.0); a v2 client, or one that does not say, the server's own v2 when it has one."""
    try:
        version = Version(client_version) if client_version else None
    except InvalidVersion:
        version = None
    if version is not None and version.major >= 3:
        final = not (version.is_prerelease or version.is_devrelease or version.local)
        return f"sagemaker=={version.public if final else SDK_V3_DEFAULT}"
    if client_version and client_version.startswith("3"):  # "3.x" that is no version at all
        return f"sagemaker=={SDK_V3_DEFAULT}"
    try:
        installed = importlib.metadata.version("sagemaker")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed is not None and installed.startswith("2."):
        return f"sagemaker=={installed}"
    return "sagemaker>=2.256,<3"


MODEL_BUILDER_SDK_V2 = "sagemaker>=2.199,<3"


def model_builder_sdk_requirement(code_dir: Path) -> str | None:
    """The sagemaker SDK a model packaged by the SDK's ``ModelBuilder`` needs to be served, or None
    when ``code_dir`` (the model's ``code/``) holds no such package.

    ModelBuilder (an ``InferenceSpec``, or a model object) writes ``code/serve.pkl`` (the spec or
    model, pickled with cloudpickle), ``metadata.json`` (its hash) and an ``inference.py`` whose
    handlers import ``sagemaker.serve`` to check and load the pickle: the model server's environment
    needs the SDK of the client's major version (its pickle names that version's modules): v3's
    release the tests run (``SDK_V3_DEFAULT``), or a v2 release the image's pins allow. The
    pickle's bytes are only searched for module names here, never unpickled: it is loaded by the
    model's own server, in its sandbox."""
    program = code_dir / "inference.py"
    pickled = code_dir / "serve.pkl"
    if not (program.is_file() and pickled.is_file() and (code_dir / "metadata.json").is_file()):
        return None
    if "sagemaker.serve" not in program.read_text(errors="replace"):
        return None  # the user's own inference.py beside a pickle of theirs
    if _contains(pickled, b"sagemaker.core."):  # v3's serializers and sessions; v2's are sagemaker.*
        return remote_sdk_requirement(SDK_V3_DEFAULT)
    # v2: any v2 release the image's pins allow (the server's own may want a newer pandas, say);
    # 2.199 is the floor v2's ModelBuilder itself writes in the model's requirements.txt
    return MODEL_BUILDER_SDK_V2


def _contains(path: Path, needle: bytes, chunk: int = 2**20) -> bool:
    """Whether the file holds ``needle``, read a chunk at a time (a pickled model may be large)."""
    tail = b""
    with path.open("rb") as f:
        while block := f.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle) :]
    return False


def _remote_function_environment(repo: str, client_version: str | None) -> EnvironmentSpec:
    """A remote function's image: this site's Python (the sagemaker SDK checks that it is the
    client's major.minor) with the sagemaker SDK of the client's major version (see
    :func:`remote_sdk_requirement`), which its bootstrap then finds installed, and what every
    framework environment carries (COMMON: setuptools with pkg_resources, as AWS's images have)."""
    sagemaker = remote_sdk_requirement(client_version)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    client = f" (the client runs sagemaker {client_version})" if client_version else ""
    return EnvironmentSpec(
        f"{repo} (Python {python}, {sagemaker})",
        _unique((sagemaker, *COMMON)),
        note=f"{repo} runs remote functions with this site's Python {python} and {sagemaker}{client}",
    )


def _vkey(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def _join(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


def _unique(packages: tuple[str, ...]) -> tuple[str, ...]:
    """One requirement per package, the first named winning (the framework's own pins first)."""
    seen: set[str] = set()
    kept = []
    for requirement in packages:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        if name not in seen:
            seen.add(name)
            kept.append(requirement)
    return tuple(kept)


def _read_site_images(path: Path) -> dict[str, EnvironmentSpec]:
    if not path.exists():
        return {}
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    images: dict[str, EnvironmentSpec] = {}
    for name, entry in raw.get("images", {}).items():
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{path}: [images.{name!r}] must be a table")
        if "python" in entry:
            images[name] = EnvironmentSpec(name, python=str(entry["python"]))
        elif "requirements" in entry or "requirements_file" in entry:
            requirements = list(entry.get("requirements", []))
            if "requirements_file" in entry:
                file = Path(entry["requirements_file"]).expanduser()
                if not file.is_absolute():
                    file = path.parent / file
                requirements += [
                    line.strip()
                    for line in file.read_text().splitlines()
                    if line.strip() and not line.strip().startswith("#")
                ]
            images[name] = EnvironmentSpec(name, tuple(requirements))
        else:
            raise ConfigurationError(
                f"{path}: image {name!r} needs 'python' (an interpreter) or 'requirements' / 'requirements_file'"
            )
    return images
