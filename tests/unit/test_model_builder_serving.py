"""A model packaged by the sagemaker SDK's ModelBuilder is served with the SDK of its client's major
version; the server finds which from the pickle's module names, without unpickling it."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from shipyard.envs import model_builder_sdk_requirement
from shipyard.envs._images import SDK_V3_DEFAULT

SDK_INFERENCE = (
    "from sagemaker.serve.spec.inference_spec import InferenceSpec\ndef model_fn(model_dir): ...\n"
)


class Exploding:
    """Unpickling this runs code: the server must never do it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("raise SystemExit('the server unpickled the model')",))


def _package(code: Path, pickled: bytes, inference: str = SDK_INFERENCE) -> Path:
    code.mkdir()
    (code / "inference.py").write_text(inference)
    (code / "serve.pkl").write_bytes(pickled)
    (code / "metadata.json").write_text('{"sha256_hash": "0"}')
    return code


@pytest.mark.parametrize(
    ("modules", "wanted"),
    [
        # v3's schema builder pickles its serializers from sagemaker.core
        (["sagemaker.serve.spec.inference_spec", "sagemaker.core.deserializers.base"], f"=={SDK_V3_DEFAULT}"),
        # v2's: any v2 the image's pins allow (v2's own >=2.199 alone would now resolve to v3)
        (["sagemaker.serve.spec.inference_spec", "sagemaker.base_deserializers"], ">=2.199,<3"),
    ],
)
def test_the_sdk_is_the_one_the_pickle_names(tmp_path: Path, modules: list[str], wanted: str) -> None:
    pickled = pickle.dumps((Exploding(), modules))
    assert model_builder_sdk_requirement(_package(tmp_path / "code", pickled)) == f"sagemaker{wanted}"


def test_a_pickled_model_larger_than_a_read_is_searched_whole(tmp_path: Path) -> None:
    pickled = pickle.dumps((b"\0" * (3 * 2**20 + 7), "sagemaker.core.serializers.base"))
    assert (
        model_builder_sdk_requirement(_package(tmp_path / "code", pickled)) == f"sagemaker=={SDK_V3_DEFAULT}"
    )


def test_code_that_is_not_the_sdks_package_gets_nothing(tmp_path: Path) -> None:
    # the user's own inference.py beside a pickle of theirs
    own = _package(tmp_path / "own", pickle.dumps("sagemaker.core."), inference="def model_fn(d): ...\n")
    assert model_builder_sdk_requirement(own) is None
    (tmp_path / "script").mkdir()
    (tmp_path / "script" / "inference.py").write_text(SDK_INFERENCE)  # no pickle
    assert model_builder_sdk_requirement(tmp_path / "script") is None
