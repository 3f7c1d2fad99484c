"""What a job's requirements.txt may ask of the server, which installs it outside the sandbox."""

from __future__ import annotations

import pytest

from shipyard.envs._cache import EnvironmentBuildError, check_job_requirements


def test_requirements_comments_markers_and_index_urls_are_accepted() -> None:
    check_job_requirements(
        "# pinned\n"
        "scikit-learn==1.2.2  # the container's\n"
        "pandas>=1.5; python_version >= '3.8'\n"
        "tabulate[widechars]~=0.9\n"
        "--extra-index-url https://download.pytorch.org/whl/cpu\n"
        "-i https://pypi.org/simple\n"
        "wheelpkg @ https://example.org/wheelpkg-1.0-py3-none-any.whl\n"
        "\n"
    )


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("-r /etc/shadow", "the option -r"),
        ("-c /root/.aws/credentials", "the option -c"),
        ("-e /srv/shipyard", "the option -e"),
        ("--find-links /root", "the option --find-links"),
        ("--extra-index-url file:///root/wheels", "an index is an http(s) URL"),
        ("evil @ file:///tmp/evilpkg", "evil from file:///tmp/evilpkg"),
        ("/home/someone/evilpkg", "not a requirement"),
        ("./evilpkg", "not a requirement"),
    ],
)
def test_files_and_folders_of_the_server_are_refused_naming_the_line(line: str, said: str) -> None:
    with pytest.raises(EnvironmentBuildError) as refused:
        check_job_requirements(f"numpy\n{line}\n")
    assert f"requirements.txt line 2 ({line!r})" in refused.value.message
    assert said in refused.value.message
