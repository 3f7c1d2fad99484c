"""The console's notebook instances page in Debian's headless Chromium: the list with status
and owner, and a link that opens the notebook's JupyterLab."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests.integration.test_notebook_instances import ROLE, _status

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "console-screenshots"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
pytest.importorskip("jupyterlab", reason="the notebooks extra (jupyterlab) is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("console-notebooks") / "data") as server:
        yield server


@pytest.fixture
def page(server: ServerProcess) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert errors == [], errors


def test_the_notebooks_page_lists_them_and_opens_jupyterlab(page: Any, server: ServerProcess) -> None:
    sm = boto_client("sagemaker", server.url)
    sm.create_notebook_instance(NotebookInstanceName="console-nb", InstanceType="ml.t3.medium", RoleArn=ROLE)
    _status(sm, "console-nb", "InService")
    page.goto(f"{server.url}/ui#/notebooks")
    row = page.locator("#notebooks tr", has_text="console-nb")
    row.wait_for()
    assert "InService" in row.inner_text() and "ml.t3.medium" in row.inner_text()
    row.locator("button.notebook-open").click()
    link = row.locator("a.notebook-link")
    link.wait_for()
    href = link.get_attribute("href")
    assert href.startswith("http://127.0.0.1:") and "shipyard_token=" in href
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "notebooks.png"), full_page=True)
    jupyter = page.context.new_page()  # the link opens in a tab of its own (target=_blank)
    jupyter.goto(href)
    jupyter.wait_for_function("document.title.includes('JupyterLab')", timeout=60_000)
    jupyter.close()
    sm.stop_notebook_instance(NotebookInstanceName="console-nb")
    _status(sm, "console-nb", "Stopped")
