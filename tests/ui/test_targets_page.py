"""The Event targets page in a real headless browser (Playwright driving Debian's chromium) against the plugin app
served by uvicorn on a migrated SQLite file, signed in as an operator (role op) or a viewer of Airflow's simple auth
manager. Nothing dispatches here: deliveries stay pending."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from demobank.db.models import EventDelivery
from demobank.events.catalog import examples
from tests.conftest import ARTIFACTS
from tests.ui.conftest import LiveServer

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TIMEOUT_MS = 15_000


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught JavaScript errors of the page."""
    return []


@pytest.fixture
def page(browser: Any, live_server: LiveServer, page_errors: list[str]) -> Iterator[Any]:
    # A browser time zone other than UTC: the replay form's times must still be read as UTC.
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="Europe/Berlin")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()


def minute(moment: datetime) -> str:
    """A ``datetime-local`` input's value (the page reads it as UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def test_targets_page(page: Any, live_server: LiveServer, page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    # Three transactions published before the target exists: it gets them only by replay.
    published = httpx.post(f"{live_server.url}/demobank/api/v1/events", timeout=30, json={"events": [
        {"type": "transaction.created", "data": examples("transaction.created")[n % 2], "subject": f"TXN-{n}"}
        for n in range(3)]})
    assert published.status_code == 201, published.text

    page.goto(f"{live_server.url}/demobank/targets")

    # -- the empty state
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    expect(page.get_by_test_id("empty-state")).to_contain_text("No event targets yet")
    expect(page.get_by_test_id("targets-table")).to_be_hidden()
    expect(page.get_by_test_id("error-banner")).to_be_hidden()

    # -- a bad bus name: the API's explanation in the banner, the form keeps what was typed
    page.get_by_test_id("add-target").click()
    form = page.get_by_test_id("target-form")
    expect(form).to_be_visible()
    form.get_by_label("Name", exact=True).fill("finance-bus")
    form.get_by_label("Kind").select_option("eventbridge")
    form.get_by_label("Description").fill("Finance's bus")
    form.get_by_label("Add a pattern").select_option("transaction.created")
    expect(form.get_by_label("Event types", exact=True)).to_have_value("transaction.created")
    form.get_by_label("Match (JSON)").fill('{"amount": {">=": "1000"}}')
    form.get_by_label("Bus name").fill("finance events")
    form.get_by_label("Region").fill("eu-central-1")
    page.get_by_test_id("save-target").click()

    banner = page.get_by_test_id("error-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Could not add the target")
    expect(banner).to_contain_text("config.bus_name")
    expect(banner).to_contain_text("String should match pattern")
    expect(banner).to_contain_text("HTTP 422")
    expect(form.get_by_label("Name", exact=True)).to_have_value("finance-bus")
    expect(form.get_by_label("Bus name")).to_have_value("finance events")
    expect(form.get_by_label("Match (JSON)")).to_have_value('{"amount": {">=": "1000"}}')
    expect(page.get_by_test_id("empty-state")).to_be_visible()

    # -- match that is not JSON: refused before sending, input kept
    form.get_by_label("Bus name").fill("finance-events")
    form.get_by_label("Match (JSON)").fill('{"amount": >= 1000}')
    page.get_by_test_id("save-target").click()
    expect(banner).to_contain_text("match is not valid JSON")
    expect(form.get_by_label("Match (JSON)")).to_have_value('{"amount": >= 1000}')
    expect(form.get_by_label("Bus name")).to_have_value("finance-events")

    # -- add it
    form.get_by_label("Match (JSON)").fill('{"amount": {">=": "1000"}}')
    page.get_by_test_id("save-target").click()
    expect(banner).to_be_hidden()
    expect(page.get_by_test_id("target-editor")).to_be_hidden()
    expect(page.get_by_test_id("notice")).to_contain_text("finance-bus added")
    rows = page.get_by_test_id("target-row")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(page.get_by_test_id("empty-state")).to_be_hidden()
    expect(row.get_by_test_id("name")).to_have_text("finance-bus")
    expect(row.get_by_test_id("kind")).to_have_text("eventbridge")
    expect(row.get_by_test_id("destination")).to_have_text(
        "bus finance-events · region eu-central-1 · connection aws_default")
    expect(row.get_by_test_id("filter")).to_contain_text("transaction.created")
    expect(row.get_by_test_id("match")).to_have_text('match {"amount":{">=":"1000"}}')
    expect(row.get_by_test_id("state")).to_have_text("enabled")
    expect(row.get_by_test_id("pending")).to_have_text("pending 0")
    expect(row.get_by_test_id("delivered")).to_have_text("delivered 0")
    expect(row.get_by_test_id("dead")).to_have_text("dead 0")

    # -- edit it: the form is filled in from the target; text goes into the page as text
    row.get_by_role("button", name="Edit: finance-bus").click()
    expect(form.get_by_label("Name", exact=True)).to_have_value("finance-bus")
    expect(form.get_by_label("Bus name")).to_have_value("finance-events")
    expect(form.get_by_label("AWS connection")).to_have_value("aws_default")
    expect(page.get_by_test_id("save-target")).to_have_text("Save changes")
    form.get_by_label("Description").fill('<img src=x onerror="window.pwned=1"> & "ops"')
    form.get_by_label("Event types", exact=True).fill("transaction.*, customer.created")
    form.get_by_label("Match (JSON)").fill("")
    page.get_by_test_id("save-target").click()
    expect(page.get_by_test_id("target-editor")).to_be_hidden()
    expect(row.get_by_test_id("filter")).to_have_text("transaction.*, customer.created")
    expect(row.get_by_test_id("match")).to_have_count(0)
    expect(row).to_contain_text('<img src=x onerror="window.pwned=1"> & "ops"')
    assert row.locator("img").count() == 0
    assert page.evaluate("window.pwned") is None

    # -- disable, enable
    row.get_by_test_id("toggle").click()
    expect(row.get_by_test_id("state")).to_have_text("disabled")
    expect(row.get_by_test_id("toggle")).to_have_text("Enable")
    expect(row.get_by_test_id("ping")).to_be_disabled()
    row.get_by_test_id("toggle").click()
    expect(row.get_by_test_id("state")).to_have_text("enabled")
    expect(row.get_by_test_id("toggle")).to_have_text("Disable")

    # -- a test event: its id, then the pending count
    row.get_by_role("button", name="Send test event: finance-bus").click()
    notice = page.get_by_test_id("notice-text")
    expect(notice).to_have_text(re.compile(rf"^test event {UUID} queued: dispatch next sweep \(within a minute\)$"))
    event_id = re.search(UUID, notice.inner_text()).group(0)
    expect(row.get_by_test_id("pending")).to_have_text("pending 1")
    with Session(live_server.engine) as session:
        assert session.scalars(select(EventDelivery.event_id)).all() == [event_id]
    assert live_server.announcer.calls[-1] == {"events": 1, "source": "ping"}

    # -- deliveries
    row.get_by_test_id("deliveries").click()
    panel = page.get_by_test_id("deliveries-panel")
    expect(panel).to_be_visible()
    expect(panel.get_by_test_id("delivery-row")).to_have_count(1)
    expect(panel.get_by_test_id("delivery-row")).to_contain_text(event_id)
    expect(panel.get_by_test_id("delivery-row")).to_contain_text("demobank.ping")
    expect(panel.get_by_test_id("delivery-status")).to_have_text("pending")

    # -- replay the transactions published before the target existed
    row.get_by_test_id("replay").click()
    replay = page.get_by_test_id("replay-panel")
    expect(replay).to_be_visible()
    replay.get_by_label("Event type").select_option("transaction.created")
    now = datetime.now(UTC)
    replay.get_by_label("Start (UTC)").fill(minute(now - timedelta(hours=1)))
    replay.get_by_label("End (UTC, excluded)").fill(minute(now + timedelta(hours=1)))
    page.get_by_test_id("replay-submit").click()
    expect(page.get_by_test_id("replay-result")).to_have_text(
        "3 event(s) queued for replay to finance-bus: dispatch next sweep (within a minute)")
    expect(row.get_by_test_id("pending")).to_have_text("pending 4")
    expect(panel.get_by_test_id("delivery-row")).to_have_count(4)
    expect(banner).to_be_hidden()
    expect(page.get_by_test_id("permission-note")).to_be_hidden()
    expect(page.get_by_test_id("signed-in")).to_have_text("signed in as operator")

    # -- the history: who did what, latest first, with what changed
    row.get_by_role("button", name="History: finance-bus").click()
    history = page.get_by_test_id("audit-panel")
    expect(history).to_be_visible()
    expect(history.get_by_role("heading")).to_have_text("History of finance-bus")
    entries = history.get_by_test_id("audit-row")
    expect(entries).to_have_count(6)
    expect(history.get_by_test_id("audit-action")).to_have_text(
        ["replayed", "pinged", "enabled", "disabled", "changed", "created"])
    expect(history.get_by_test_id("audit-actor")).to_have_text(["operator"] * 6)
    expect(entries.nth(0).get_by_test_id("audit-details")).to_have_text(re.compile(
        r"^transaction\.created from \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ to .*: 3 queued$"))
    expect(entries.nth(1).get_by_test_id("audit-details")).to_have_text(f"test event {event_id}")
    expect(entries.nth(2).get_by_test_id("audit-details")).to_have_text("was disabled")
    expect(entries.nth(3).get_by_test_id("audit-details")).to_have_text("was enabled")
    changed = entries.nth(4).get_by_test_id("audit-details").locator("div")
    expect(changed).to_have_text([
        'description: "Finance\'s bus" → "<img src=x onerror=\\"window.pwned=1\\"> & \\"ops\\""',
        'event_types: ["transaction.created"] → ["transaction.*","customer.created"]',
        'match: {"amount":{">=":"1000"}} → none'])
    expect(entries.nth(5).get_by_test_id("audit-details")).to_contain_text("kind eventbridge")
    expect(entries.nth(5).get_by_test_id("audit-details")).to_contain_text('"bus_name":"finance-events"')
    assert history.locator("img").count() == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entries.nth(0).get_by_test_id("audit-at").inner_text())

    # A change made while the history is open shows up in it.
    row.get_by_test_id("toggle").click()
    expect(history.get_by_test_id("audit-action").first).to_have_text("disabled")
    expect(entries).to_have_count(7)
    row.get_by_test_id("toggle").click()
    expect(entries).to_have_count(8)

    expect(banner).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "targets.png"
    screenshot.unlink(missing_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    assert page_errors == []


def test_api_errors_on_edit_show_the_detail(page: Any, live_server: LiveServer, page_errors: list[str]) -> None:
    """A name taken meanwhile (409) and a bad DAG id (422): the banner has the API's explanation, the form keeps
    what was typed."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    api = f"{live_server.url}/demobank/api/v1"
    created = httpx.post(f"{api}/targets", timeout=30, json={"name": "alerts", "kind": "airflow_dag",
                                                             "config": {"dag_id": "connect_transaction_alert"}})
    assert created.status_code == 201, created.text
    # A delivery that failed: the page shows the latest error in full.
    assert httpx.post(f"{api}/targets/{created.json()['id']}/ping", timeout=30).status_code == 202
    failure = "DAG connect_transaction_alert is paused: unpause it in Airflow's UI. " + "x" * 400 + " (the end)"
    with Session(live_server.engine) as session, session.begin():
        session.execute(update(EventDelivery).values(attempts=3, last_error=failure))
    page.goto(f"{live_server.url}/demobank/targets")
    row = page.get_by_test_id("target-row")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("destination")).to_have_text("DAG connect_transaction_alert")
    expect(row.get_by_test_id("last-error")).to_have_text(failure)
    expect(row.get_by_test_id("pending")).to_have_text("pending 1")
    row.get_by_test_id("deliveries").click()
    delivery = page.get_by_test_id("delivery-row")
    expect(delivery).to_contain_text("demobank.ping")
    expect(delivery).to_contain_text(failure)

    # Another user takes the name meanwhile: saving our edit under it is a conflict.
    other = httpx.post(f"{api}/targets", timeout=30, json={"name": "taken", "config": {}})
    assert other.status_code == 201, other.text
    row.get_by_test_id("edit").click()
    form = page.get_by_test_id("target-form")
    expect(form.get_by_label("Kind")).to_have_value("airflow_dag")
    expect(form.get_by_label("DAG id")).to_be_visible()
    expect(form.get_by_label("Bus name")).to_be_hidden()
    form.get_by_label("Name", exact=True).fill("taken")
    page.get_by_test_id("save-target").click()
    banner = page.get_by_test_id("error-banner")
    expect(banner).to_contain_text("Could not save the target")
    expect(banner).to_contain_text("an event target named 'taken' already exists")
    expect(banner).to_contain_text("HTTP 409")
    expect(form.get_by_label("Name", exact=True)).to_have_value("taken")

    # An unknown DAG id pattern is explained by the API as well.
    form.get_by_label("Name", exact=True).fill("alerts")
    form.get_by_label("DAG id").fill("connect transaction alert")
    page.get_by_test_id("save-target").click()
    expect(banner).to_contain_text("config.dag_id")
    expect(form.get_by_label("DAG id")).to_have_value("connect transaction alert")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "targets-error.png"), full_page=True)
    page.get_by_test_id("error-banner").get_by_role("button", name="Dismiss the error").click()
    expect(banner).to_be_hidden()
    assert page_errors == []


def test_a_viewer_sees_everything_and_can_change_nothing(page: Any, live_server: LiveServer,
                                                         page_errors: list[str]) -> None:
    """Signed in as a viewer: the actions that change a target are disabled, each saying which permission is
    missing, and a note says so once; deliveries and history stay open. The API refuses what the page hides."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    api = f"{live_server.url}/demobank/api/v1"
    created = httpx.post(f"{api}/targets", timeout=30, json={"name": "finance-bus", "config": {}})
    assert created.status_code == 201, created.text
    assert httpx.post(f"{api}/targets/{created.json()['id']}/ping", timeout=30).status_code == 202
    with Session(live_server.engine) as session, session.begin():  # a dead letter: the health panel offers actions
        session.execute(update(EventDelivery).values(status="dead", attempts=8, last_error="AccessDenied"))
    live_server.sign_in("viewer", name="viewer")

    page.goto(f"{live_server.url}/demobank/targets")
    note = page.get_by_test_id("permission-note")
    expect(note).to_be_visible()
    missing = ("You (viewer) may not manage event targets and requeue dead letters: that needs PUT on Connections "
               "(Airflow's Op or Admin role).")
    expect(note).to_contain_text("Read only. " + missing)
    expect(page.get_by_test_id("signed-in")).to_have_text("signed in as viewer")
    expect(page.get_by_test_id("add-target")).to_be_disabled()
    expect(page.get_by_test_id("add-target")).to_have_attribute("title", missing)
    row = page.get_by_test_id("target-row")
    expect(row).to_have_count(1)
    for action in ("edit", "toggle", "ping", "replay"):
        expect(row.get_by_test_id(action)).to_be_disabled()
        expect(row.get_by_test_id(action)).to_have_attribute("title", missing)
    expect(row.get_by_test_id("dead")).to_have_text("dead 1")
    health = page.get_by_test_id("health-row")
    expect(health).to_have_count(1)
    for action in ("health-requeue", "health-dismiss"):
        expect(health.get_by_test_id(action)).to_be_disabled()
        expect(health.get_by_test_id(action)).to_have_attribute("title", missing)
    expect(page.get_by_test_id("reports-requeue")).to_be_disabled()

    row.get_by_test_id("deliveries").click()
    expect(page.get_by_test_id("delivery-row")).to_have_count(1)
    row.get_by_test_id("history").click()
    history = page.get_by_test_id("audit-panel")
    expect(history.get_by_test_id("audit-action")).to_have_text(["pinged", "created"])
    expect(history.get_by_test_id("audit-actor")).to_have_text(["operator", "operator"])

    # What the page hides, the API refuses (a viewer calling it from the page's own origin).
    status, detail = page.evaluate("""async () => {
        const response = await fetch("api/v1/targets/1/disable", {method: "POST", credentials: "same-origin"});
        return [response.status, (await response.json()).detail];
    }""")
    assert status == 403
    assert detail.startswith("forbidden: user 'viewer' may not manage event targets")
    expect(page.get_by_test_id("error-banner")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "targets-viewer.png"), full_page=True)
    assert page_errors == []
