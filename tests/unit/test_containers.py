"""Framework images resolve to what AWS's container of that version carries, not only the framework."""

from __future__ import annotations

from packaging.requirements import Requirement

from shipyard.envs import EnvironmentSpec, ImageResolver

DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost"
HF = f"{DLC}/huggingface-pytorch-training"


def _pins(spec: EnvironmentSpec) -> dict[str, Requirement]:
    pins = {}
    for text in spec.requirements:
        requirement = Requirement(text)
        name = requirement.name.lower()
        assert name not in pins, f"{name} named twice in {spec.requirements}"
        pins[name] = requirement
    return pins


def _allows(spec: EnvironmentSpec, package: str, version: str) -> bool:
    return _pins(spec)[package].specifier.contains(version)


def test_every_framework_environment_has_setuptools_with_pkg_resources_boto3_and_requests() -> None:
    resolver = ImageResolver(torch_version="2.13.0+cpu")
    for image in (
        f"{SKLEARN}:0.23-1-cpu-py3",
        f"{SKLEARN}:1.2-1-cpu-py3",
        f"{XGBOOST}:1.5-1",
        f"{XGBOOST}:1.7-1",
        "811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:latest",
        f"{DLC}/pytorch-training:1.9.0-cpu-py38",
        f"{DLC}/pytorch-inference:2.6.0-cpu-py312",
        f"{DLC}/tensorflow-training:2.13.0-cpu-py310",
        f"{HF}:2.1.0-transformers4.36.0-gpu-py310-cu121-ubuntu20.04",
        # a remote function's (@remote, @step) as well
        "236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-311:1.0",
        "public.ecr.aws/sagemaker/sagemaker-distribution:2.1-cpu",
    ):
        pins = _pins(resolver.resolve(image))
        assert {"setuptools", "boto3", "requests"} <= pins.keys(), image
        # setuptools 81 removed pkg_resources, which xgboost 1.5 and older scripts import
        assert not pins["setuptools"].specifier.contains("81.0.0"), image


def test_pytorch_containers_carry_the_pydata_stack_of_their_era() -> None:
    resolver = ImageResolver(torch_version="2.13.0+cpu")
    for tag in ("1.9.0-cpu-py38", "2.1.0-cpu-py310", "2.5.1-cpu-py311", "2.8.0-cpu-py312"):
        pins = _pins(resolver.resolve(f"{DLC}/pytorch-training:{tag}"))
        assert str(pins["torch"]) == "torch==2.13.0+cpu"
        assert {"numpy", "pandas", "scikit-learn", "scipy", "pillow", "h5py", "pyyaml"} <= pins.keys(), tag
    # PyTorch 1.9's container (Python 3.8) had pandas 1.x and scikit-learn 0.24: the oldest
    # releases that install on this Python, never today's
    old = resolver.resolve(f"{DLC}/pytorch-training:1.9.0-cpu-py38")
    assert _allows(old, "pandas", "1.5.3") and not _allows(old, "pandas", "2.0.0")
    assert _allows(old, "scikit-learn", "1.1.3") and not _allows(old, "scikit-learn", "1.2.0")
    assert not _allows(old, "numpy", "2.0.0")
    mid = resolver.resolve(f"{DLC}/pytorch-training:2.1.0-cpu-py310")
    assert _allows(mid, "pandas", "2.1.4") and not _allows(mid, "pandas", "2.2.0")
    assert _allows(mid, "scikit-learn", "1.3.2") and not _allows(mid, "numpy", "2.0.0")
    new = resolver.resolve(f"{DLC}/pytorch-training:2.8.0-cpu-py312")
    assert _allows(new, "numpy", "2.3.5") and _allows(new, "scikit-learn", "1.7.2")
    assert not _allows(new, "pandas", "3.0.0")  # pandas 3 came after the newest container
    # training and inference images of a version share the environment
    inference = resolver.resolve(f"{DLC}/pytorch-inference:2.1.0-cpu-py310")
    assert inference.requirements == mid.requirements


def test_torchvision_is_the_sites_cpu_build_for_its_torch_or_absent_and_said_so() -> None:
    image = f"{DLC}/pytorch-training:2.1.0-cpu-py310"
    without = ImageResolver(torch_version="2.13.0+cpu").resolve(image)
    assert "torchvision" not in _pins(without)
    assert without.note is not None
    assert "torchvision is not installed" in without.note and "torchvision-0.28.*+cpu" in without.note
    assert "PyTorch 2.1.0 requested; using PyTorch 2.13.0+cpu" in without.note  # both notes kept
    with_cpu_build = ImageResolver(torch_version="2.13.0+cpu", torchvision_version="0.28.0+cpu").resolve(
        image
    )
    assert str(_pins(with_cpu_build)["torchvision"]) == "torchvision==0.28.0+cpu"
    assert "torchvision" not in (with_cpu_build.note or "")
    # a CPU torchvision built for another torch would not install beside this one
    other = ImageResolver(torch_version="2.13.0+cpu", torchvision_version="0.27.1+cpu").resolve(image)
    assert "torchvision" not in _pins(other)
    assert "it has 0.27.1+cpu, built for another torch" in (other.note or "")
    # where torch comes from the index as the image names it, torchvision does too
    from_index = ImageResolver().resolve(image)
    assert str(_pins(from_index)["torch"]) == "torch==2.1.0"
    assert str(_pins(from_index)["torchvision"]) == "torchvision==0.16.*"
    assert str(_pins(ImageResolver().resolve(f"{DLC}/pytorch-training:1.13.1-cpu-py39"))["torchvision"]) == (
        "torchvision==0.14.*"
    )


def test_tensorflow_containers_carry_the_pydata_stack() -> None:
    resolver = ImageResolver()
    old = resolver.resolve(f"{DLC}/tensorflow-training:2.4.1-cpu-py37")
    assert "tensorflow-cpu~=2.12.0" in old.requirements and "2.12" in (old.note or "")
    assert {"pandas", "scikit-learn", "scipy", "pillow", "h5py"} <= _pins(old).keys()
    assert not _allows(old, "pandas", "2.0.0")  # the container's era, not the release installed
    new = resolver.resolve(f"{DLC}/tensorflow-training:2.19.0-cpu-py312")
    assert "tensorflow-cpu~=2.19.0" in new.requirements and _allows(new, "pandas", "2.3.3")


def test_scikit_learn_and_xgboost_containers_carry_boto3_and_requests() -> None:
    sklearn = _pins(ImageResolver().resolve(f"{SKLEARN}:1.2-1-cpu-py3"))
    assert str(sklearn["scikit-learn"]) == "scikit-learn==1.2.2"
    assert {"boto3", "requests", "pandas", "numpy", "scipy", "joblib"} <= sklearn.keys()
    xgboost = _pins(ImageResolver().resolve(f"{XGBOOST}:1.5-1"))
    assert (
        str(xgboost["xgboost"]) == "xgboost==1.5.2" and {"boto3", "requests", "setuptools"} <= xgboost.keys()
    )


def test_hugging_face_containers_pin_transformers_datasets_and_accelerate_at_the_containers() -> None:
    resolver = ImageResolver(torch_version="2.13.0+cpu")
    expected = {
        "2.0.0-transformers4.28.1-gpu-py310-cu118-ubuntu20.04": ("4.28.1", "2.15.0", "0.19.0"),
        "2.1.0-transformers4.36.0-gpu-py310-cu121-ubuntu20.04": ("4.36.0", "2.18.0", "0.26.0"),
        "2.3.0-transformers4.48.0-gpu-py311-cu121-ubuntu20.04": ("4.48.0", "3.1.0", "1.1.0"),
        "2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04": ("4.56.2", "4.1.0", "1.10.1"),
    }
    for tag, (transformers, datasets, accelerate) in expected.items():
        spec = resolver.resolve(f"{HF}:{tag}")
        pins = _pins(spec)
        assert str(pins["transformers"]) == f"transformers=={transformers}"
        assert str(pins["datasets"]) == f"datasets=={datasets}"
        assert str(pins["accelerate"]) == f"accelerate=={accelerate}"
        # a pyarrow of the pinned datasets' day: newer ones removed what older datasets use
        assert "pyarrow" in pins and not pins["pyarrow"].specifier.contains("26.0.1"), tag
        assert {"torch", "pandas", "scikit-learn"} <= pins.keys()
    # the Carpentries lesson's HuggingFaceProcessor (transformers 4.28.1): datasets of its day and
    # a pyarrow from before it (datasets 2.15 with pyarrow 26 fails on its array features)
    lesson = _pins(resolver.resolve(f"{HF}:2.0.0-transformers4.28.1-gpu-py310-cu118-ubuntu20.04"))
    assert not lesson["pyarrow"].specifier.contains("15.0.0") and lesson["pyarrow"].specifier.contains(
        "14.0.2"
    )


def test_hugging_face_releases_too_old_or_unknown_say_what_they_get() -> None:
    resolver = ImageResolver(torch_version="2.13.0+cpu")
    old = resolver.resolve(f"{HF}:1.9.1-transformers4.12.3-gpu-py38-cu111-ubuntu20.04")
    assert str(_pins(old)["transformers"]) == "transformers==4.26.0"
    assert "transformers 4.12.3 does not install on this Python" in (old.note or "")
    assert _allows(old, "pandas", "1.5.3")  # the PyTorch 1.9 container's era
    unknown = resolver.resolve(f"{HF}:2.1.0-transformers4.40.0-gpu-py310-cu121-ubuntu20.04")
    assert str(_pins(unknown)["transformers"]) == "transformers==4.40.0"
    assert str(_pins(unknown)["datasets"]) == "datasets==2.18.0"
    assert "those of its transformers 4.37.0 container" in (unknown.note or "")
    short = resolver.resolve(f"{HF}:2.1-transformers4.36-cpu-py310-ubuntu22.04")  # a short tag
    assert str(_pins(short)["datasets"]) == "datasets==2.18.0" and "not a release" not in (short.note or "")
    tf = ImageResolver().resolve(
        f"{DLC}/huggingface-tensorflow-training:2.11-transformers4.26-cpu-py39-ubuntu20.04"
    )
    assert {"tensorflow-cpu", "transformers", "datasets", "pandas"} <= _pins(tf).keys()
    # accelerate requires torch, which AWS's TensorFlow containers do not have (nor should the index's)
    assert "accelerate" not in _pins(tf) and "torch" not in _pins(tf)


def test_a_changed_container_table_is_a_new_environment() -> None:
    """Environments are cached by their spec: what the tables add is a new key, never the old cache."""
    resolver = ImageResolver(torch_version="2.13.0+cpu")
    spec = resolver.resolve(f"{DLC}/pytorch-training:2.1.0-cpu-py310")
    before = EnvironmentSpec(spec.name, ("torch==2.13.0+cpu", "numpy"))  # what it resolved to before
    assert spec.key() != before.key()
