"""Every framework image URI the sagemaker SDK produces resolves to an environment spec."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.envs import EnvironmentSpec, ImageResolver
from shipyard.errors import ValidationError


def _sdk_image_uris() -> Iterator[tuple[str, str]]:
    """(framework, uri) for every version, scope and region the installed SDK knows.

    The SDK makes one URI per version and scope (``image_uris.retrieve``); every other region's URI
    differs only in the account and domain, which come from the SDK's own registry table.
    """
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import sagemaker
    from sagemaker import image_uris

    config_dir = Path(sagemaker.__file__).parent / "image_uri_config"
    for framework in ("sklearn", "xgboost", "pytorch", "tensorflow", "huggingface"):
        config = json.loads((config_dir / f"{framework}.json").read_text())
        for scope in ("training", "inference"):
            scoped = config.get(scope)
            if scoped is None:
                continue
            for version, details in scoped["versions"].items():
                bases = [k for k in details if k.startswith(("pytorch", "tensorflow"))] or [None]
                for base in bases:
                    entry = details[base] if base else details
                    registries = entry.get("registries", {})
                    if "us-east-1" not in registries:
                        continue
                    kwargs = {
                        "image_scope": scope,
                        "instance_type": "ml.g5.xlarge" if framework == "huggingface" else "ml.m5.xlarge",
                    }
                    if entry.get("py_versions"):
                        kwargs["py_version"] = entry["py_versions"][0]
                    if base:
                        kwargs["base_framework_version"] = base
                    try:
                        uri = image_uris.retrieve(framework, "us-east-1", version, **kwargs)
                    except ValueError:
                        continue  # a combination the SDK itself refuses
                    path = uri.split("/", 1)[1]
                    for region, account in registries.items():
                        domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
                        yield framework, f"{account}.dkr.ecr.{region}.{domain}/{path}"


SDK_URIS = list(_sdk_image_uris())


def test_the_sdk_gives_many_uris() -> None:
    assert len(SDK_URIS) > 5000
    assert {f for f, _ in SDK_URIS} == {"sklearn", "xgboost", "pytorch", "tensorflow", "huggingface"}


@pytest.mark.parametrize(("framework", "uri"), SDK_URIS[::97])  # a spread sample; the next test runs them all
def test_sample_resolves_to_its_framework(framework: str, uri: str) -> None:
    spec = ImageResolver(torch_version="2.13.0").resolve(uri)
    packages = {
        "sklearn": "scikit-learn",
        "xgboost": "xgboost",
        "pytorch": "torch",
        "tensorflow": "tensorflow",
    }
    expected = packages.get(framework, "transformers")
    assert any(r.startswith(expected) for r in spec.requirements), (uri, spec)


def test_every_sdk_uri_resolves() -> None:
    resolver = ImageResolver(torch_version="2.13.0")
    failures = []
    for _, uri in SDK_URIS:
        try:
            resolver.resolve(uri)
        except ValidationError as exc:
            failures.append(f"{uri}: {exc.message}")
    assert not failures, "\n".join(failures[:10])


def test_old_versions_map_to_the_nearest_installable_release_and_say_so() -> None:
    spec = ImageResolver().resolve(
        "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn:0.20.0-cpu-py3"
    )
    assert "scikit-learn==1.1.3" in spec.requirements
    assert spec.note is not None and "0.20.0" in spec.note and "1.1.3" in spec.note
    current = ImageResolver().resolve(
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    )
    assert "scikit-learn==1.2.2" in current.requirements and current.note is None
    torch = ImageResolver(torch_version="2.13.0").resolve(
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1.0-gpu-py310"
    )
    assert "torch==2.13.0" in torch.requirements and "2.1.0" in (torch.note or "")


def test_builtin_xgboost_is_marked() -> None:
    spec = ImageResolver().resolve("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1")
    assert spec.builtin == "xgboost" and "xgboost==1.7.6" in spec.requirements


def test_moving_tags_resolve_to_what_aws_serves_under_them() -> None:
    from sagemaker import image_uris

    for version in ("latest", "1"):  # the first-party algorithm's tags: its legacy 0.72 release
        uri = image_uris.retrieve("xgboost", "us-east-1", version)
        assert uri == f"811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:{version}"
        spec = ImageResolver().resolve(uri)
        assert spec.builtin == "xgboost" and "xgboost==1.5.2" in spec.requirements
        assert spec.note is not None and f"xgboost:{version} is AWS's XGBoost 0.72" in spec.note
        assert "using xgboost 1.5.2" in spec.note
    raw = ImageResolver().resolve("433757028032.dkr.ecr.us-west-2.amazonaws.com/xgboost")  # no tag: latest
    assert raw.builtin == "xgboost" and "xgboost==1.5.2" in raw.requirements
    for tag in ("latest", "cpu-py3"):  # AWS publishes no such tag in its framework repositories
        image = f"683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:{tag}"
        with pytest.raises(
            ValidationError, match=rf"tag '{tag}' names no sklearn version.*e\.g\. 1\.2-1"
        ) as exc:
            ImageResolver().resolve(image)
        assert exc.value.field == "TrainingImage" and exc.value.value == image


def test_unknown_and_private_images_are_refused_with_what_is_known() -> None:
    with pytest.raises(ValidationError) as exc:
        ImageResolver().resolve("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own-trainer:3")
    assert "sagemaker-scikit-learn" in exc.value.message and "container engine" in exc.value.message
    assert exc.value.field == "TrainingImage"
    with pytest.raises(ValidationError, match="container engine"):
        ImageResolver().resolve("ghcr.io/me/trainer:latest")


def test_site_images(tmp_path: Path) -> None:
    (tmp_path / "reqs.txt").write_text("# pinned for the lab\ntabulate==0.9.0\n")
    (tmp_path / "images.toml").write_text(
        '[images."lab/trainer:1"]\nrequirements_file = "reqs.txt"\n'
        '[images."lab/conda"]\npython = "/opt/conda/bin/python"\n'
    )
    resolver = ImageResolver.load(tmp_path)
    assert resolver.resolve("lab/trainer:1").requirements == ("tabulate==0.9.0",)
    assert resolver.resolve("lab/conda").python == "/opt/conda/bin/python"
    assert "lab/trainer:1" in resolver.known()


def test_spec_key_depends_on_requirements_only() -> None:
    a = EnvironmentSpec("a", ("x==1", "y==2"))
    assert a.key() == EnvironmentSpec("b", ("y==2", "x==1")).key()
    assert a.key() != a.key("tabulate\n")
    assert EnvironmentSpec.from_json(a.to_json()) == a
