"""The Data Quality tab in Airflow's real UI on a live `make run`: signed in through the UI's login form, the DAG page
of `data_factory_transactions`, its "Data Quality" tab, and in the tab's iframe the runs of the session's Data Factory
days (``tests.e2e.data_factory``): 2026-01-08 (success, 5% quarantined), 2026-01-09 (failed in validate_and_load,
50% bad) and 2025-12-31 (failed in check_source, never exported). Headless chromium (Debian's) through Playwright.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import ARTIFACTS
from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform
from tests.e2e.data_factory import DAG, HALF_BAD_DAY, NEVER_EXPORTED, SAMPLE_DAY

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 60_000  # Airflow's UI on a busy SQLite metadata database answers slowly at times
MONTE_CARLO = "https://getmontecarlo.com"  # montecarlo_default's ui_url in airflow_settings.yaml
RECORD_TIMEOUT = 120


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1400})
    context.set_default_timeout(TIMEOUT_MS)
    # No internet here: Monte Carlo's pages are answered by a stub, so that a link that opens is observable.
    context.route(f"{MONTE_CARLO}/**", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                   body="<title>Monte Carlo (stub)</title>"))
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="module")
def finished_days(api: Api, data_factory_runs: dict[str, str]) -> dict[str, str]:
    """The session's three days, once their runs are over and the record says how each ended (a failed task's
    callback writes its failure as the task ends)."""
    expected = {SAMPLE_DAY: "success", HALF_BAD_DAY: "failed", NEVER_EXPORTED: "failed"}
    for day, run_id in data_factory_runs.items():
        assert api.wait_for_run(DAG, run_id)["state"] == expected[day], api.task_states(DAG, run_id)
    deadline = time.monotonic() + RECORD_TIMEOUT
    while True:
        response = api.plugin("GET", f"/data-quality/{DAG}/runs", limit=200)
        assert response.status_code == 200, response.text
        status = {run["run_id"]: run["status"] for run in response.json()["runs"]}
        if all(status.get(run_id) == expected[day] for day, run_id in data_factory_runs.items()):
            return data_factory_runs
        if time.monotonic() > deadline:
            pytest.fail(f"the record did not show the runs' outcomes within {RECORD_TIMEOUT} s: {status}")
        time.sleep(2)


def sign_in(page: Any, platform: LivePlatform, path: str) -> None:
    """Open ``path``; Airflow sends the browser to its login form, and back after "Sign in"."""
    page.goto(f"{platform.api_url}{path}")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}")


def test_the_data_quality_tab_shows_the_runs_in_airflows_ui(
        context: Any, live_platform: LivePlatform, finished_days: dict[str, str]) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, live_platform, f"/dags/{DAG}")

    page.get_by_role("link", name="Data Quality").or_(page.get_by_role("tab", name="Data Quality")).first.click()
    page.wait_for_url(f"**/dags/{DAG}/plugin/demobank-data-quality")
    iframe = page.locator('iframe[title="Data Quality"]')
    expect(iframe).to_have_attribute("src", f"/demobank/data-quality/{DAG}")
    tab = page.frame_locator('iframe[title="Data Quality"]')

    def row(day: str) -> Any:
        return tab.locator(f'tr[data-testid="run-row"][data-run-id="{finished_days[day]}"]')

    sample = row(SAMPLE_DAY)
    expect(sample.get_by_test_id("outcome")).to_have_text("success")
    expect(sample.get_by_test_id("business-date")).to_have_text(SAMPLE_DAY)
    expect(sample.get_by_test_id("rows-in")).to_have_text("2,000")
    expect(sample.get_by_test_id("rows-loaded")).to_have_text("1,900")
    expect(sample.get_by_test_id("rows-quarantined")).to_have_text("100")
    expect(sample.get_by_test_id("bad-share")).to_have_text("5.0% (max 10.0%)")
    expect(sample.get_by_test_id("events-published")).to_have_text("1,900")
    expect(sample.get_by_test_id("checks-failed")).to_have_text("0 failed")
    expect(sample.get_by_test_id("failure")).to_have_text("—")

    half_bad = row(HALF_BAD_DAY)
    expect(half_bad.get_by_test_id("outcome")).to_have_text("failed")
    expect(half_bad.get_by_test_id("business-date")).to_have_text(HALF_BAD_DAY)
    expect(half_bad.get_by_test_id("failed-task")).to_have_text("validate_and_load")
    expect(half_bad.get_by_test_id("bad-share")).to_have_text("50.0% (max 10.0%)")
    expect(half_bad.get_by_test_id("rows-loaded")).to_have_text("0")
    expect(half_bad.get_by_test_id("rows-quarantined")).to_have_text("1,000")
    expect(half_bad.get_by_test_id("error")).to_contain_text(
        "50.0% of the rows of 2026-01-09 are bad (1,000 of 2,000), above the threshold of 10.0%")

    never = row(NEVER_EXPORTED)
    expect(never.get_by_test_id("outcome")).to_have_text("failed")
    expect(never.get_by_test_id("business-date")).to_have_text(NEVER_EXPORTED)
    expect(never.get_by_test_id("failed-task")).to_have_text("check_source")
    expect(never.get_by_test_id("error")).to_contain_text("no export for business day 2025-12-31")

    # The chart has the three runs, the two failed ones marked.
    for day, status in ((SAMPLE_DAY, "success"), (HALF_BAD_DAY, "failed"), (NEVER_EXPORTED, "failed")):
        slot = tab.locator(f'g[data-testid="chart-run"][data-run-id="{finished_days[day]}"]')
        expect(slot).to_have_attribute("data-status", status)
        expect(slot.get_by_test_id("failed-marker")).to_have_count(1 if status == "failed" else 0)

    # The half-bad day's checks, one click away.
    half_bad.get_by_test_id("toggle-detail").click()
    detail = tab.locator(f'tr[data-testid="detail-row"][data-run-id="{finished_days[HALF_BAD_DAY]}"]')
    gate = detail.locator('tr[data-check="bad_share_threshold"]')
    expect(gate.get_by_test_id("check-status")).to_have_text("failed")
    expect(gate.get_by_test_id("check-failed-rows")).to_have_text("1,000")

    # Monte Carlo: the link is there, built from the connection (configured: no note), and it opens a new tab even
    # from Airflow's sandboxed iframe.
    link = tab.get_by_test_id("monte-carlo-dag-link")
    expect(link).to_have_text("View in Monte Carlo")
    expect(link).to_have_attribute("href", f"{MONTE_CARLO}/jobs?search={DAG}")
    expect(tab.get_by_test_id("monte-carlo-note")).to_have_count(0)
    expect(sample.get_by_test_id("monte-carlo-run-link")).to_have_attribute(
        "href", f"{MONTE_CARLO}/jobs?search={DAG}&run_id={requests.utils.quote(finished_days[SAMPLE_DAY], safe='')}")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "data_quality_tab_e2e.png"
    screenshot.unlink(missing_ok=True)
    tab.get_by_role("heading", name="Data Quality").scroll_into_view_if_needed()  # the tab from its top
    page.screenshot(path=str(screenshot), full_page=True)
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000

    with context.expect_page() as opened:
        link.click()
    assert opened.value.url == f"{MONTE_CARLO}/jobs?search={DAG}"
    assert page.url.endswith(f"/dags/{DAG}/plugin/demobank-data-quality")
    assert errors == []


def test_the_tab_of_a_dag_outside_the_data_factory_says_so(context: Any, live_platform: LivePlatform) -> None:
    """Airflow shows the tab on every DAG's page; on events_dispatch it explains that there is nothing to show."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, live_platform, "/dags/events_dispatch")
    page.goto(f"{live_platform.api_url}/dags/events_dispatch/plugin/demobank-data-quality")
    notice = page.frame_locator('iframe[title="Data Quality"]').get_by_test_id("no-record")
    expect(notice).to_contain_text("DAG events_dispatch is not a Data Factory pipeline (it has no 'data_factory' tag)")


def test_the_tab_is_registered_and_its_routes_need_a_signed_in_user(live_platform: LivePlatform, api: Api) -> None:
    plugins = api.get("/plugins")["plugins"]
    ours = next(plugin for plugin in plugins if plugin["name"] == "demobank")
    tabs = [view for view in ours["external_views"] if view["destination"] == "dag"]
    assert [(tab["name"], tab["href"], tab["url_route"]) for tab in tabs] == [
        ("Data Quality", "/demobank/data-quality/{DAG_ID}", "demobank-data-quality")]
    for path in (f"/demobank/data-quality/{DAG}", f"/demobank/api/v1/data-quality/{DAG}/runs",
                 f"/demobank/api/v1/data-quality/{DAG}/runs/some_run"):
        assert requests.get(f"{live_platform.api_url}{path}", timeout=30).status_code == 401, path
        forged = requests.get(f"{live_platform.api_url}{path}", headers={"Authorization": "Bearer forged"}, timeout=30)
        assert forged.status_code in (401, 403), path
    unknown = api.plugin("GET", "/data-quality/no_such_dag/runs")
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == ("there is no DAG no_such_dag in Airflow and no data quality record of it: "
                                        "check the DAG id")
