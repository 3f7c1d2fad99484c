"""The generated SDK and CLI reference in docs/ matches the code."""

from __future__ import annotations

from pathlib import Path

from shipyard._reference import documents

DOCS = Path(__file__).parents[2] / "docs" / "reference"


def test_the_reference_in_docs_is_the_one_the_code_generates() -> None:
    for name, text in documents().items():
        assert (DOCS / name).read_text() == text, (
            f"docs/reference/{name} is stale: python -m shipyard._reference"
        )


def test_the_reference_covers_every_sdk_name_and_cli_command() -> None:
    import shipyard.sdk

    sdk, cli = documents()["sdk.md"], documents()["cli.md"]
    assert all(f"## `{name}" in sdk for name in shipyard.sdk.__all__)
    for command in (
        "train",
        "tune",
        "jobs logs",
        "endpoints invoke",
        "instance-types",
        "sagemaker-env",
        "demo",
    ):
        assert f"## `shipyard {command}`" in cli
