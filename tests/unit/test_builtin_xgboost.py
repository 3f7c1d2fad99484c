"""The built-in XGBoost's pure parts: the model file's format by image version, XGBoost's error
message without its C++ frames, and the model server's defaults (CSV in, one line per record in a
batch, a body it cannot read refused as a client error naming its content type)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.core.algorithms.xgboost import model_file_format, validate_hyperparameters
from shipyard.runtime import model_server
from shipyard.runtime.algorithms.xgboost_train import device_parameters, error_message, hyperparameters

REGISTRY = "683313688378.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("0.90-2-cpu-py3", "pickle"),
        ("1.0-1-cpu-py3", "pickle"),
        ("1.2-1", "pickle"),
        ("1.2-2", "pickle"),
        ("1.3-1", "native"),
        ("1.5-1", "native"),
        ("1.7-1", "native"),
        ("3.0-5", "native"),
    ],
)
def test_model_file_format_follows_the_containers_version(tag: str, expected: str) -> None:
    assert model_file_format(f"{REGISTRY}/sagemaker-xgboost:{tag}") == expected


@pytest.mark.parametrize("tag", ["1", "latest"])
def test_the_legacy_algorithms_moving_tags_pickle_as_0_72_did(tag: str) -> None:
    assert model_file_format(f"811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:{tag}") == "pickle"


def test_xgboost_error_keeps_its_message_and_drops_the_frames() -> None:
    raw = (
        "[07:35:20] ../src/objective/regression_obj.cu:119: label must be in [0,1] for logistic regression\n"
        "Stack trace:\n"
        "  [bt] (0) /venv/lib/python3.11/site-packages/xgboost/lib/libxgboost.so(+0x22dbbc) [0x7f]\n"
        "  [bt] (1) /venv/lib/python3.11/site-packages/xgboost/lib/libxgboost.so(+0x6a1c) [0x7f]\n"
    )
    assert error_message(raw) == "label must be in [0,1] for logistic regression"
    assert error_message("Check failed: num_class > 0") == "Check failed: num_class > 0"


def test_csv_rows_are_numbers() -> None:
    rows = model_server.default_input_fn(b"1,2,3\n4,5,6\n", "text/csv")
    assert rows.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"1,2,three\n4,5,6\n", "text/csv"), (b"{not json", "application/json"), (b"xx", "application/x-npy")],
)
def test_a_body_that_is_not_its_content_type_is_refused_naming_it(body: bytes, content_type: str) -> None:
    with pytest.raises(model_server.UnsupportedContentType) as refused:
        model_server.default_input_fn(body, content_type)
    assert f"could not be read as {content_type}" in str(refused.value)


def test_an_unknown_content_type_is_refused_naming_the_ones_read() -> None:
    with pytest.raises(model_server.UnsupportedContentType, match=r"'text/plain' is not supported.*text/csv"):
        model_server.default_input_fn(b"x", "text/plain")


def test_xgboost_answers_one_line_on_an_endpoint_and_a_line_per_record_in_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    scores = np.array([0.25, 0.5, 0.75])
    monkeypatch.delenv("SAGEMAKER_BATCH", raising=False)
    assert model_server.default_output_fn("xgboost", scores, "*/*") == (b"0.25,0.5,0.75", "text/csv")
    monkeypatch.setenv("SAGEMAKER_BATCH", "true")
    assert model_server.default_output_fn("xgboost", scores, "*/*") == (b"0.25\n0.5\n0.75\n", "text/csv")
    softprob = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert model_server.default_output_fn("xgboost", softprob, "text/csv") == (
        b"0.9,0.1\n0.2,0.8\n",
        "text/csv",
    )


def test_on_a_gpu_type_xgboost_trains_on_the_gpu_as_sagemakers_algorithm_does() -> None:
    params, note = device_parameters({"eta": 0.3}, 1, "2.1.4")
    assert params == {"eta": 0.3, "tree_method": "hist", "device": "cuda"}
    assert note == "Shipyard: XGBoost 2.1.4 on 1 GPU: tree_method=hist, device=cuda (on its first GPU)"
    # before 2.0 XGBoost has no device: its GPU histogram method is gpu_hist
    assert device_parameters({}, 4, "1.7.6")[0] == {"tree_method": "gpu_hist"}


def test_what_the_job_set_is_kept_and_a_cpu_type_keeps_xgboosts_defaults() -> None:
    params, note = device_parameters({"tree_method": "exact"}, 1, "2.1.4")
    assert (
        params == {"tree_method": "exact"}
        and note is not None
        and "tree_method=exact, as the job set" in note
    )
    assert device_parameters({"device": "cpu"}, 1, "2.1.4")[0] == {"device": "cpu"}
    assert device_parameters({"eta": 0.3}, 0, "2.1.4") == ({"eta": 0.3}, None)


def test_device_is_a_hyperparameter_the_algorithm_takes(tmp_path: Path) -> None:
    assert validate_hyperparameters({"num_round": "5", "device": "cpu"})["device"] == "cpu"
    (tmp_path / "hyperparameters.json").write_text(json.dumps({"num_round": "5", "device": '"cuda:1"'}))
    assert hyperparameters(tmp_path / "hyperparameters.json") == {"num_round": 5, "device": "cuda:1"}
