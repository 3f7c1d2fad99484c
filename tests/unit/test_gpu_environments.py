"""PyTorch's build by the instance's GPUs (envs/_images.py, envs/_cache.py, services/jobs.py): a
GPU type gets the CUDA build from the site's gpu_package_sources, searched first and never the
server's CPU torch; without that setting, or on a CPU type, the CPU build, and the log says which."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shipyard.core.placement import Resources
from shipyard.envs import EnvironmentCache, EnvironmentSpec, ImageResolver, PackageSources
from tests.unit._services import World, params

PYTORCH = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1.0-gpu-py310"
HUGGINGFACE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:2.1.0-transformers4.36.0-gpu-py310"
CUDA = ("https://download.pytorch.org/whl/cu124", "/srv/cuda-wheels")


def _resolver(gpu_sources: tuple[str, ...] = CUDA) -> ImageResolver:
    return ImageResolver(torch_version="2.13.0+cpu", gpu_sources=gpu_sources)


def test_a_gpu_type_gets_pytorchs_cuda_build_from_the_sites_gpu_sources() -> None:
    spec = _resolver().resolve(PYTORCH, gpus=1, instance_type="ml.g5.xlarge")
    assert "torch==2.13.0" in spec.requirements and "torchvision==0.28.*" in spec.requirements
    assert not any("+cpu" in r for r in spec.requirements)
    assert spec.sources == {"extra_index_urls": (CUDA[0],), "find_links": (CUDA[1],)}
    assert spec.note is not None and spec.note.startswith(
        "ml.g5.xlarge has 1 GPU: PyTorch 2.13.0's CUDA build"
    )
    assert "https://download.pytorch.org/whl/cu124 /srv/cuda-wheels" in spec.note
    # Hugging Face's PyTorch images too, with their own packages
    hf = _resolver().resolve(HUGGINGFACE, gpus=4, instance_type="ml.g5.12xlarge")
    assert (
        hf.sources
        and "torch==2.13.0" in hf.requirements
        and any(r.startswith("transformers") for r in hf.requirements)
    )


def test_without_gpu_sources_or_a_gpu_it_is_the_cpu_build() -> None:
    cpu_type = _resolver().resolve(PYTORCH, gpus=0, instance_type="ml.m5.large")
    assert "torch==2.13.0+cpu" in cpu_type.requirements and cpu_type.sources is None
    assert cpu_type == _resolver().resolve(PYTORCH)  # as before: nothing changes for CPU types
    unnamed = _resolver(()).resolve(PYTORCH, gpus=1, instance_type="ml.g5.xlarge")
    assert "torch==2.13.0+cpu" in unnamed.requirements and unnamed.sources is None
    assert (
        unnamed.note is not None
        and (
            "ml.g5.xlarge has 1 GPU, but this site names no source of CUDA builds of PyTorch "
            "(the gpu_package_sources setting): PyTorch 2.13.0+cpu is its CPU build"
        )
        in unnamed.note
    )
    # a site whose own torch is a CUDA build already gives it as it is
    cuda_site = ImageResolver(torch_version="2.13.0+cu124", gpu_sources=CUDA).resolve(PYTORCH, gpus=1)
    assert "torch==2.13.0+cu124" in cuda_site.requirements and cuda_site.sources is None


def test_the_environment_keeps_its_sources_through_the_job_record() -> None:
    spec = _resolver().resolve(PYTORCH, gpus=1, instance_type="ml.g5.xlarge")
    assert EnvironmentSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    cpu = _resolver().resolve(PYTORCH)
    assert spec.key() != cpu.key() and cpu.key() == EnvironmentSpec(cpu.name, cpu.requirements).key()


def test_the_build_searches_the_gpu_sources_first_and_never_takes_the_servers_cpu_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = PackageSources(
        "https://mirror.example/simple", ("https://extra.example/simple",), ("/opt/wheels",)
    )
    cache = EnvironmentCache(tmp_path, site, allow_server_python=True)
    commands: list[list[str]] = []

    def run(command: list[str], log: Any) -> None:  # uv, as far as the build looks at what it did
        commands.append(list(command))
        if command[1] == "venv":
            Path(command[-1]).mkdir(parents=True)

    monkeypatch.setattr(EnvironmentCache, "_run", staticmethod(run))
    spec = _resolver().resolve(PYTORCH, gpus=1, instance_type="ml.g5.xlarge")
    lines: list[str] = []
    # the server's Python has torch 2.13.0+cpu, which torch==2.13.0 would match: built all the same
    resolved = cache.resolve(spec, log=lines.append)
    assert resolved.how == "built"
    install = next(c for c in commands if c[1:3] == ["pip", "install"])
    extras = [install[i + 1] for i, a in enumerate(install) if a == "--extra-index-url"]
    links = [install[i + 1] for i, a in enumerate(install) if a == "--find-links"]
    assert extras == [CUDA[0], "https://extra.example/simple"]  # the CUDA index first
    assert links == [CUDA[1], "/opt/wheels"] and "https://mirror.example/simple" in install
    assert any("come first from" in line for line in lines)


def test_a_job_on_a_gpu_type_records_the_cuda_build(world: World) -> None:
    world.backend._capacity = Resources(8, 32, 2)  # a machine with two GPUs
    world.training._resolver = _resolver()  # type: ignore[attr-defined]
    world.training.create(
        {**params("on-gpu", instance_type="ml.g5.xlarge"), "AlgorithmSpecification": {"TrainingImage": PYTORCH, "TrainingInputMode": "File"}},
        region="eu-west-1",
    )  # fmt: skip
    world.training.create(
        {**params("on-cpu"), "AlgorithmSpecification": {"TrainingImage": PYTORCH, "TrainingInputMode": "File"}},
        region="eu-west-1",
    )  # fmt: skip
    on_gpu: Any = EnvironmentSpec.from_json(world.job("on-gpu").run.environment)
    on_cpu: Any = EnvironmentSpec.from_json(world.job("on-cpu").run.environment)
    assert on_gpu.sources and "torch==2.13.0" in on_gpu.requirements and "CUDA build" in on_gpu.note
    assert on_cpu.sources is None and "torch==2.13.0+cpu" in on_cpu.requirements
