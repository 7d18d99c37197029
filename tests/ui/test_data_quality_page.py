"""The Data Quality tab's page in a real headless browser (Playwright driving Debian's chromium) against the page and
its API served by uvicorn on a migrated SQLite file, with runs recorded by the pipeline's writer (``QualityRecorder``):
a sample day with 5% quarantined, a day failed in validate_and_load (an error with HTML special characters), a day
failed in check_source, and a run still going."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import ARTIFACTS
from tests.ui.conftest import HTML_ERROR, MISSING_SOURCE_ERROR, QUALITY_DAG, LiveServer, QualityRuns

TIMEOUT_MS = 15_000
MC = "https://mc.example.test"
RUNNING = "scheduled__2026-01-10T02:00:00+00:00"
#: The iframe Airflow 3.3's UI shows a plugin tab in (``allow-popups`` is not among its sandbox flags).
AIRFLOW_SANDBOX = "allow-scripts allow-same-origin allow-forms allow-downloads"


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught JavaScript errors of the page."""
    return []


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    # Monte Carlo is not reachable from here: its pages are answered by a stub, so a link that opens is observable.
    context = browser.new_context(viewport={"width": 1500, "height": 1100}, timezone_id="Europe/Berlin")
    context.set_default_timeout(TIMEOUT_MS)
    context.route(f"{MC}/**", lambda route: route.fulfill(status=200, content_type="text/html",
                                                          body="<title>Monte Carlo (stub)</title>"))
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: Any, page_errors: list[str]) -> Any:
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    return page


def started(server: LiveServer, run_id: str) -> str:
    """The run's start as the page shows it (UTC, to the second), from the record."""
    from demobank.data_factory.quality import run_detail

    return run_detail(server.engine, QUALITY_DAG, run_id)["started_at"].replace("T", " ").split(".")[0].rstrip("Z")


def run_row(page: Any, run_id: str) -> Any:
    return page.locator(f'tr[data-testid="run-row"][data-run-id="{run_id}"]')


def detail_row(page: Any, run_id: str) -> Any:
    return page.locator(f'tr[data-testid="detail-row"][data-run-id="{run_id}"]')


def test_the_data_quality_page(page: Any, quality_live_server: LiveServer, quality_runs: QualityRuns,
                               record_quality_run: Callable[..., None], montecarlo_connection: str,
                               page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    record_quality_run(QUALITY_DAG, RUNNING, "2026-01-10", finish=False)
    page.goto(f"{quality_live_server.url}/demobank/data-quality/{QUALITY_DAG}")

    # -- the history: newest first, one row per run
    rows = page.get_by_test_id("run-row")
    expect(rows).to_have_count(4)
    assert [rows.nth(n).get_attribute("data-run-id") for n in range(4)] == [
        RUNNING, quality_runs.failed_source, quality_runs.failed_load, quality_runs.success]
    expect(page.get_by_test_id("loading")).to_be_hidden()
    expect(page.get_by_test_id("empty-state")).to_be_hidden()
    expect(page.get_by_test_id("error-banner")).to_be_hidden()
    expect(page.get_by_role("columnheader")).to_have_text(
        ["Outcome", "Business date", "Started · duration", "Rows in", "Loaded", "Quarantined", "Bad share (gate)",
         "Events", "Checks", "Failed task · error", "More"])

    success = run_row(page, quality_runs.success)
    expect(success.get_by_test_id("outcome")).to_have_text("success")
    expect(success.get_by_test_id("outcome")).to_have_class("badge success")
    expect(success.get_by_test_id("business-date")).to_have_text("2026-01-08")
    expect(success.get_by_test_id("started")).to_have_text(started(quality_live_server, quality_runs.success))
    expect(success.get_by_test_id("duration")).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(success.get_by_test_id("rows-in")).to_have_text("2,000")
    expect(success.get_by_test_id("rows-loaded")).to_have_text("1,900")
    expect(success.get_by_test_id("rows-quarantined")).to_have_text("100")
    expect(success.get_by_test_id("bad-share")).to_have_text("5.0% (max 10.0%)")
    expect(success.get_by_test_id("bad-share").locator(".over")).to_have_count(0)
    expect(success.get_by_test_id("events-published")).to_have_text("1,900")
    expect(success.get_by_test_id("checks-passed")).to_have_text("3 passed")
    expect(success.get_by_test_id("checks-failed")).to_have_text("0 failed")
    expect(success.get_by_test_id("failure")).to_have_text("—")

    failed_load = run_row(page, quality_runs.failed_load)
    expect(failed_load.get_by_test_id("outcome")).to_have_text("failed")
    expect(failed_load.get_by_test_id("outcome")).to_have_class("badge failed")
    expect(failed_load.get_by_test_id("business-date")).to_have_text("2026-01-09")
    expect(failed_load.get_by_test_id("rows-in")).to_have_text("2,000")
    expect(failed_load.get_by_test_id("rows-loaded")).to_have_text("0")
    expect(failed_load.get_by_test_id("rows-quarantined")).to_have_text("1,000")
    expect(failed_load.get_by_test_id("bad-share")).to_have_text("50.0% (max 10.0%)")
    expect(failed_load.get_by_test_id("bad-share").locator(".over")).to_have_text("50.0%")
    expect(failed_load.get_by_test_id("events-published")).to_have_text("—")
    expect(failed_load.get_by_test_id("checks-failed")).to_have_text("1 failed")
    expect(failed_load.get_by_test_id("failed-task")).to_have_text("validate_and_load")
    expect(failed_load.get_by_test_id("error")).to_have_text(HTML_ERROR)  # as text: nothing of it became HTML
    assert failed_load.locator("img, b").count() == 0
    assert page.evaluate("window.pwned") is None

    failed_source = run_row(page, quality_runs.failed_source)
    expect(failed_source.get_by_test_id("outcome")).to_have_text("failed")
    expect(failed_source.get_by_test_id("business-date")).to_have_text("2025-12-31")
    for cell in ("rows-in", "rows-loaded", "rows-quarantined", "events-published"):
        expect(failed_source.get_by_test_id(cell)).to_have_text("—")
    expect(failed_source.get_by_test_id("bad-share")).to_have_text("— (max 10.0%)")
    expect(failed_source.get_by_test_id("checks-passed")).to_have_text("0 passed")
    expect(failed_source.get_by_test_id("checks-failed")).to_have_text("1 failed")
    expect(failed_source.get_by_test_id("failed-task")).to_have_text("check_source")
    expect(failed_source.get_by_test_id("error")).to_have_text(MISSING_SOURCE_ERROR)

    running = run_row(page, RUNNING)
    expect(running.get_by_test_id("outcome")).to_have_text("running")
    expect(running.get_by_test_id("duration")).to_have_text("running…")
    expect(running.get_by_test_id("checks")).to_have_text("none recorded")

    # -- the chart: one slot per run, oldest first; bars to scale; the failed runs and the running one marked
    chart = page.get_by_test_id("chart")
    expect(chart).to_be_visible()
    slots = chart.get_by_test_id("chart-run")
    expect(slots).to_have_count(4)
    assert [slots.nth(n).get_attribute("data-run-id") for n in range(4)] == [
        quality_runs.success, quality_runs.failed_load, quality_runs.failed_source, RUNNING]
    assert [slots.nth(n).get_attribute("data-status") for n in range(4)] == ["success", "failed", "failed", "running"]
    expect(chart.get_by_test_id("failed-marker")).to_have_count(2)
    expect(chart.get_by_test_id("running-marker")).to_have_count(1)
    expect(chart.get_by_test_id("y-tick")).to_have_text(["0", "1,000", "2,000"])
    expect(chart.get_by_test_id("x-label")).to_have_text(["01-08", "01-09", "12-31", "01-10"])

    def bar(slot: int, kind: str) -> tuple[str, float]:
        rect = slots.nth(slot).get_by_test_id(f"bar-{kind}")
        return rect.get_attribute("data-value"), float(rect.get_attribute("height"))

    (loaded, loaded_height), (quarantined, quarantined_height) = bar(0, "loaded"), bar(0, "quarantined")
    assert (loaded, quarantined) == ("1900", "100")
    assert loaded_height == pytest.approx(19 * quarantined_height)  # 1,900 : 100
    assert loaded_height + quarantined_height == pytest.approx(180 * 2_000 / 2_000)  # the full plot at the max, 2,000
    assert bar(1, "loaded") == ("0", 0.0) and bar(1, "quarantined")[1] == pytest.approx(90)  # 1,000 of 2,000
    assert bar(2, "loaded") == ("0", 0.0) and bar(2, "quarantined") == ("0", 0.0)
    expect(slots.nth(1).locator("title")).to_have_text(
        "2026-01-09: failed in validate_and_load, 0 loaded, 1,000 quarantined")
    expect(chart.locator("desc")).to_contain_text(
        "4 run(s), oldest first, 2 failed: 2026-01-08: success, 1,900 loaded, 100 quarantined;")

    # -- a run's tables and checks, from its row
    toggle = success.get_by_test_id("toggle-detail")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(detail_row(page, quality_runs.success)).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    detail = detail_row(page, quality_runs.success)
    expect(detail).to_be_visible()
    tables = detail.get_by_test_id("table-row")
    expect(tables.get_by_test_id("table-name")).to_have_text(
        ["core_banking.transactions", "warehouse.transactions", "warehouse.quarantine_transactions",
         "demobank.outbox_events"])
    warehouse = detail.locator('tr[data-table="warehouse.transactions"]')
    expect(warehouse.get_by_test_id("table-rows-in")).to_have_text("1,900")
    expect(warehouse.get_by_test_id("table-rows-out")).to_have_text("1,900")
    expect(warehouse).to_contain_text("inserted 1,900 · changed 0 · unchanged 0 · committed true")
    expect(detail.locator('tr[data-table="warehouse.quarantine_transactions"]').get_by_test_id(
        "table-rows-quarantined")).to_have_text("100")
    checks = detail.get_by_test_id("check-row")
    expect(checks.get_by_test_id("check-name")).to_have_text(
        ["source_available", "required_fields", "amount_positive", "export_complete", "bad_share_threshold"])
    expect(checks.get_by_test_id("check-status")).to_have_text(["passed", "warning", "warning", "passed", "passed"])
    gate = detail.locator('tr[data-check="bad_share_threshold"]')
    expect(gate.get_by_test_id("check-failed-rows")).to_have_text("100")
    expect(gate.get_by_test_id("check-message")).to_have_text("5.00% bad rows (100 of 2,000); threshold 10.00%")
    toggle.click()
    expect(detail).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")

    # -- and from the chart: the failed load's slot opens its row's detail
    slots.nth(1).click()
    failed_detail = detail_row(page, quality_runs.failed_load)
    expect(failed_detail).to_be_visible()
    expect(failed_load.get_by_test_id("toggle-detail")).to_have_attribute("aria-expanded", "true")
    failed_gate = failed_detail.locator('tr[data-check="bad_share_threshold"]')
    expect(failed_gate.get_by_test_id("check-status")).to_have_text("failed")
    expect(failed_gate.get_by_test_id("check-failed-rows")).to_have_text("1,000")
    expect(failed_detail.locator('tr[data-table="warehouse.transactions"]').get_by_test_id(
        "table-rows-out")).to_have_text("0")
    slots.nth(2).focus()
    page.keyboard.press("Enter")
    source_detail = detail_row(page, quality_runs.failed_source)
    expect(source_detail).to_be_visible()
    expect(source_detail).to_contain_text("No table counts recorded for this run.")
    expect(source_detail.get_by_test_id("check-message")).to_have_text(MISSING_SOURCE_ERROR)

    # -- Monte Carlo: the DAG and each run
    dag_link = page.get_by_test_id("monte-carlo-dag-link")
    expect(dag_link).to_have_text("View in Monte Carlo")
    expect(dag_link).to_have_attribute("href", f"{MC}/jobs?search={QUALITY_DAG}")
    expect(dag_link).to_have_attribute("target", "_blank")
    expect(page.get_by_test_id("monte-carlo-note")).to_have_count(0)
    expect(success.get_by_test_id("monte-carlo-run-link")).to_have_attribute(
        "href", f"{MC}/jobs?search={QUALITY_DAG}&run_id=manual__2026-01-08T10%3A00%3A00%2B00%3A00")
    expect(success.get_by_test_id("monte-carlo-run-link")).to_have_attribute(
        "aria-label", f"View run {quality_runs.success} (2026-01-08) in Monte Carlo")

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "data_quality_page.png"
    screenshot.unlink(missing_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert page_errors == []


def test_in_airflows_sandboxed_iframe_the_monte_carlo_link_opens_a_new_tab(
        context: Any, page: Any, quality_live_server: LiveServer, quality_runs: QualityRuns,
        montecarlo_connection: str, page_errors: list[str]) -> None:
    """Airflow's iframe has no ``allow-popups``: a plain ``target=_blank`` link would do nothing there."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    host = f"{quality_live_server.url}/airflow-dag-page"  # same origin as the tab, as in Airflow
    page.route(host, lambda route: route.fulfill(status=200, content_type="text/html", body=(
        f'<title>DAG page</title><iframe id="tab" title="Data Quality" sandbox="{AIRFLOW_SANDBOX}" '
        f'src="/demobank/data-quality/{QUALITY_DAG}" style="width: 1400px; height: 900px"></iframe>')))
    page.goto(host)
    frame = page.frame_locator("#tab")
    expect(frame.get_by_test_id("run-row")).to_have_count(3)

    with context.expect_page() as opened:
        frame.get_by_test_id("monte-carlo-dag-link").click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url == f"{MC}/jobs?search={QUALITY_DAG}"
    assert tab.title() == "Monte Carlo (stub)"
    tab.close()

    with context.expect_page() as opened:
        frame.locator(f'tr[data-run-id="{quality_runs.failed_load}"]').get_by_test_id("monte-carlo-run-link").click()
    assert opened.value.url == f"{MC}/jobs?search={QUALITY_DAG}&run_id=manual__2026-01-09T10%3A00%3A00%2B00%3A00"
    assert page.url == host  # the DAG page stayed where it was
    assert page_errors == []


def test_a_data_factory_dag_without_runs_shows_the_empty_state(
        page: Any, quality_live_server: LiveServer, page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(f"{quality_live_server.url}/demobank/data-quality/data_factory_customer_sync")
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    expect(page.get_by_test_id("empty-state")).to_contain_text("No runs recorded yet")
    expect(page.get_by_test_id("runs-table")).to_be_hidden()
    expect(page.get_by_test_id("chart-panel")).to_be_hidden()
    expect(page.get_by_test_id("monte-carlo-dag-link")).to_be_visible()
    # No Monte Carlo connection here: the link still goes to Monte Carlo, and the page says how to point it elsewhere.
    expect(page.get_by_test_id("monte-carlo-dag-link")).to_have_attribute(
        "href", "https://getmontecarlo.com/jobs?search=data_factory_customer_sync")
    expect(page.get_by_test_id("monte-carlo-note")).to_contain_text("connection montecarlo_default is not set up")
    assert page_errors == []


def test_another_dag_gets_a_clear_word_instead_of_a_history(
        page: Any, quality_live_server: LiveServer, quality_runs: QualityRuns, page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(f"{quality_live_server.url}/demobank/data-quality/events_dispatch")
    notice = page.get_by_test_id("no-record")
    expect(notice).to_be_visible()
    expect(notice).to_have_attribute("role", "status")
    expect(notice).to_contain_text("DAG events_dispatch is not a Data Factory pipeline (it has no 'data_factory' tag)")
    expect(page.get_by_test_id("runs-table")).to_have_count(0)
    expect(page.get_by_test_id("monte-carlo-dag-link")).to_have_count(0)
    assert page_errors == []


def test_an_api_failure_is_shown_in_the_banner(page: Any, quality_live_server: LiveServer,
                                               quality_runs: QualityRuns, page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    api = f"**/demobank/api/v1/data-quality/{QUALITY_DAG}/runs?limit=50"
    page.route(api, lambda route: route.fulfill(status=503, content_type="application/json", body=(
        '{"detail": "the suite\'s database could not be read (OperationalError); try again"}')))
    page.goto(f"{quality_live_server.url}/demobank/data-quality/{QUALITY_DAG}")
    banner = page.get_by_test_id("error-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Could not load the runs")
    expect(banner).to_contain_text("the suite's database could not be read (OperationalError); try again  (HTTP 503)")
    expect(page.get_by_test_id("loading")).to_be_hidden()
    expect(page.get_by_test_id("runs-table")).to_be_hidden()

    page.unroute(api)  # the database is back: Refresh shows the runs
    page.get_by_test_id("refresh").click()
    expect(page.get_by_test_id("run-row")).to_have_count(3)
    expect(banner).to_be_hidden()
    assert page_errors == []
