"""The Targets page's health panel in a real headless browser: a target that paused itself because its bus does not
exist (the real dispatcher against moto), dead letters at another target, a run report Monte Carlo rejected (the
real reporter against the sandbox), their counts, and the Resume / Requeue / Dismiss buttons. Screenshot in
``artifacts/targets-health.png``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from demobank.data_factory.reporting import MonteCarloRunReporter
from demobank.events.dispatcher import default_publisher, dispatch_until_empty
from demobank.events.target_health import TargetHealthPolicy
from tests.conftest import ARTIFACTS, free_port
from tests.data_factory.test_reporting import (  # noqa: F401 - fixtures
    make_dag,
    sandbox_dir,
    sandbox_url,
    set_mc_connection,
    store,
    success_context,
    supervisor,
)
from tests.events.conftest_moto import (  # noqa: F401 - the *_fixture functions register the fixtures
    audit_queue_fixture,
    aws_default_fixture,
    moto_aws_fixture,
)
from tests.events.test_dispatcher import add_target, deliveries, publish_events
from tests.events.test_target_health import RejectingPublisher
from tests.ui.conftest import Announcer, LiveServer, mounted, plugin_app, serving, sign_in

TIMEOUT_MS = 15_000


@pytest.fixture
def health_server(engine: Any, announcer: Announcer) -> Iterator[LiveServer]:
    """The whole plugin app (page, events API, health API) under ``/demobank``, signed in as an operator."""
    app = plugin_app(engine, announcer, role=None)
    sign_in(app, "op", name="operator")
    port = free_port()
    with serving(mounted(app), port, "health-page-uvicorn"):
        yield LiveServer(f"http://127.0.0.1:{port}", engine, announcer, app)


def test_the_page_shows_a_paused_target_its_reason_and_the_counts_and_acts_on_them(
        browser, health_server, engine, db_url, audit_queue, aws_default, monkeypatch, supervisor,  # noqa: F811
        sandbox_url, store) -> None:  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    bus = f"orders-{uuid.uuid4().hex[:8]}"
    add_target(engine, "audit-bus")
    orders = add_target(engine, "orders-bus", bus_name=bus)
    partner = add_target(engine, "partner-bus")
    ids = publish_events(engine, 3)
    policy = TargetHealthPolicy(pause_after=timedelta(minutes=1), backoff_jitter=0.0)
    factory = lambda target: RejectingPublisher(target) if target.name == "partner-bus" else (  # noqa: E731
        default_publisher(target))
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    dispatch_until_empty(engine, "w", factory, policy=policy, now=t0)
    dispatch_until_empty(engine, "w", factory, policy=policy, now=t0 + timedelta(minutes=2))  # the probe: paused
    monkeypatch.setenv("DEMOBANK_DB_URL", db_url)
    set_mc_connection(monkeypatch, sandbox_url, token="revoked-token")
    assert MonteCarloRunReporter().report(success_context(make_dag(), supervisor, "manual__1")).status == "rejected"

    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{health_server.url}/demobank/targets")
        panel = page.get_by_test_id("health-panel")
        expect(page.get_by_test_id("health-summary")).to_have_text("Needs attention: 3 problem(s).")
        expect(page.get_by_test_id("health-paused")).to_have_text("paused targets 1")
        expect(page.get_by_test_id("health-new-dead")).to_have_text("new dead letters 3")
        expect(page.get_by_test_id("health-new-rejected")).to_have_text("new rejected Monte Carlo reports 1")
        expect(panel).to_contain_text("nobody requeued or dismissed yet")
        rows = panel.get_by_test_id("health-row")
        expect(rows).to_have_count(2)
        orders_row = rows.filter(has_text="orders-bus")
        expect(orders_row.get_by_test_id("health-state")).to_contain_text("paused")
        reason = orders_row.get_by_test_id("paused-reason")
        expect(reason).to_contain_text("paused automatically")
        expect(reason).to_contain_text(f"event bus '{bus}' was not found")
        expect(reason).to_contain_text("failing continuously for 2m")
        partner_row = rows.filter(has_text="partner-bus")
        expect(partner_row.get_by_test_id("health-dead-letters")).to_have_text("new 3 of 3")
        expect(page.get_by_test_id("reports-count")).to_have_text("new 1 of 1 (df_reporting_test: 1)")
        expect(page.get_by_test_id("reports-latest")).to_contain_text("HTTP 401")
        target_rows = page.get_by_test_id("target-row")
        expect(target_rows).to_have_count(3)
        expect(target_rows.filter(has_text="orders-bus").get_by_test_id("health")).to_have_text("paused (see Health)")
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "targets-health.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.read_bytes().startswith(b"\x89PNG")

        # Requeue one dead letter by id, dismiss the others.
        partner_row.get_by_role("button", name="Requeue dead letters…: partner-bus").click()
        form = page.get_by_test_id("requeue-form")
        expect(form).to_be_visible()
        form.get_by_label("Event ids").fill(ids[0])
        page.get_by_test_id("requeue-submit").click()
        message = page.get_by_test_id("health-message")
        expect(message).to_have_text(re.compile(r"^1 dead letter\(s\) of event target 'partner-bus' requeued"))
        expect(partner_row.get_by_test_id("health-dead-letters")).to_have_text("new 2 of 2")
        expect(target_rows.filter(has_text="partner-bus").get_by_test_id("pending")).to_have_text("pending 1")
        partner_row.get_by_role("button", name="Dismiss dead letters: partner-bus").click()
        expect(message).to_contain_text("2 dead letter(s) of event target 'partner-bus' dismissed")
        expect(partner_row.get_by_test_id("health-dead-letters")).to_have_text("new 0 of 2")
        expect(page.get_by_test_id("health-new-dead")).to_have_text("new dead letters 0")

        # Resume the paused target; requeue the rejected report.
        orders_row.get_by_role("button", name="Resume: orders-bus").click()
        expect(message).to_contain_text("event target 'orders-bus' resumed")
        expect(rows).to_have_count(1)
        expect(page.get_by_test_id("health-paused")).to_have_text("paused targets 0")
        expect(target_rows.filter(has_text="orders-bus").get_by_test_id("health")).to_have_count(0)
        page.get_by_test_id("reports-requeue").click()
        expect(message).to_contain_text("1 rejected Monte Carlo run report(s) requeued")
        expect(page.get_by_test_id("health-reports")).to_be_hidden()
        expect(page.get_by_test_id("health-summary")).to_have_text("OK: nothing to act on.")
        assert errors == []
    finally:
        context.close()
    assert {row.status for row in deliveries(engine, orders).values()} == {"pending"}  # waiting for the dispatcher
    assert deliveries(engine, partner)[ids[0]].status == "pending"
