"""The console on a lab's server (auth on), in Debian's headless Chromium: a user signs in with
an access key id and secret (kept in the tab's sessionStorage only), sees who is signed in, the
owner of each job, only what it may see, and signs out; the administrator sees everyone's and
filters by owner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests.e2e.test_console import CHROMIUM, _shot, browser  # noqa: F401 - the browser fixture
from tests.integration.test_native_users import ROOT_KEY, ROOT_SECRET, Lab

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    env = {
        "SHIPYARD_AUTH": "on",
        "SHIPYARD_ACCESS_KEY_ID": ROOT_KEY,
        "SHIPYARD_SECRET_ACCESS_KEY": ROOT_SECRET,
    }
    with ServerProcess(tmp_path_factory.mktemp("console-users"), env=env) as server:
        lab = Lab(server)
        yield lab
        for name in lab.jobs.values():
            lab.native("POST", f"jobs/training/{name}/stop")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], errors


def _sign_in(page: Any, key: str, secret: str) -> None:
    page.get_by_placeholder("access key id").fill(key)
    page.get_by_placeholder("secret access key").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def test_a_user_signs_in_sees_its_own_jobs_with_their_owner_and_signs_out(page: Any, lab: Lab) -> None:
    alices, bobs = lab.jobs["alice"], lab.jobs["bob"]
    page.goto(f"{lab.server.url}/ui#/jobs/training")
    _sign_in(page, lab.keys["alice"][0], "not her secret")
    page.locator("#refused").wait_for()  # asked again, saying why
    _sign_in(page, *lab.keys["alice"])
    page.locator("#who", has_text="alice").wait_for()
    row = page.locator("#jobs tbody tr", has_text=alices)
    row.wait_for()
    assert "alice" in row.locator("td").nth(2).inner_text()  # the owner column
    assert page.locator("#jobs tbody tr", has_text=bobs).count() == 0
    stored = page.evaluate(
        "() => [sessionStorage.getItem('shipyard-token'), document.cookie, localStorage.length]"
    )
    assert stored == [":".join(lab.keys["alice"]), "", 0]  # this tab's only, never a cookie
    _shot(page, "jobs-as-a-user")

    page.goto(f"{lab.server.url}/ui#/jobs/training/{bobs}")  # another user's job
    page.locator("#forbidden", has_text="sagemaker:DescribeTrainingJob").wait_for()

    page.locator("#sign-out").click()
    page.get_by_placeholder("access key id").wait_for()
    assert page.evaluate("() => sessionStorage.length") == 0
    assert page.locator("#who").count() == 0


def test_the_administrator_sees_everyones_jobs_and_filters_them_by_owner(page: Any, lab: Lab) -> None:
    alices, bobs = lab.jobs["alice"], lab.jobs["bob"]
    page.goto(f"{lab.server.url}/ui#/jobs/training")
    _sign_in(page, *lab.admin)
    page.locator("#who", has_text="admin (administrator)").wait_for()
    page.locator("#jobs tbody tr", has_text=alices).wait_for()
    assert page.locator("#jobs tbody tr", has_text=bobs).count() == 1
    page.locator("#owner").select_option("bob")
    page.locator("#jobs tbody tr", has_text=alices).wait_for(state="detached")
    rows = page.locator("#jobs tbody tr")
    assert rows.count() == 1 and bobs in rows.first.inner_text()
    assert "owner=bob" in page.url
    _shot(page, "jobs-by-owner")
