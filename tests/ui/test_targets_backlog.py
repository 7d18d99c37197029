"""The backlog of each target on the Targets page and in ``GET /api/v1/targets``: pending deliveries, the delivery rate
over the last 5 minutes, the age of the oldest pending event.

The scenario: a burst of 1,560 events published 7 minutes ago (through the outbox; only their publication time is set
back); the real dispatcher, with a publisher that accepts everything, delivered all of them to ``fast-bus`` and 60 to
``slow-bus`` just now; ``idle-bus`` selects none of them. The page test drives Debian's chromium through Playwright
against the plugin app served by uvicorn, signed in as an operator; screenshot in ``artifacts/targets_backlog.png``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from demobank.db.engine import session_scope
from demobank.db.models import OutboxEvent
from demobank.events.dispatcher import dispatch_once, dispatch_until_empty
from tests.conftest import ARTIFACTS
from tests.events.test_backlog import AcceptingPublisher
from tests.events.test_dispatcher import add_target, publish_events
from tests.ui.conftest import Announcer, LiveServer, events_app

TIMEOUT_MS = 15_000
BURST = 1_560
SLOW_DELIVERED = 60


@dataclass(frozen=True)
class Seeded:
    slow: int
    fast: int
    idle: int
    published_at: datetime
    """When the burst was published (7 minutes before the seeding)."""


def deliver(engine: Engine, target_id: int, count: int) -> None:
    """The dispatcher delivers the target's ``count`` oldest pending deliveries now."""
    report = dispatch_once(engine, "backlog-test", AcceptingPublisher, target_id=target_id, limit=count)
    assert report.delivered == count


def seed(engine: Engine) -> Seeded:
    slow, fast = add_target(engine, "slow-bus"), add_target(engine, "fast-bus")
    idle = add_target(engine, "idle-bus", event_types=["demobank.nothing-of-this-type"])
    publish_events(engine, BURST)
    published_at = datetime.now(UTC) - timedelta(minutes=7)
    with session_scope(engine) as session:
        session.execute(update(OutboxEvent).values(created_at=published_at))
    assert dispatch_until_empty(engine, "backlog-test", AcceptingPublisher, target_id=fast).delivered == BURST
    deliver(engine, slow, SLOW_DELIVERED)
    return Seeded(slow, fast, idle, published_at)


def test_the_targets_json_carries_each_targets_backlog(engine: Engine, announcer: Announcer) -> None:
    seeded = seed(engine)
    with TestClient(events_app(engine, announcer, role="viewer")) as client:  # read is enough
        before = datetime.now(UTC)
        response = client.get("/api/v1/targets")
        after = datetime.now(UTC)
        single = client.get(f"/api/v1/targets/{seeded.slow}")
    assert response.status_code == 200, response.text
    views = {view["name"]: view for view in response.json()}
    assert set(views) == {"slow-bus", "fast-bus", "idle-bus"}

    slow = views["slow-bus"]
    assert slow["deliveries"] == {"pending": BURST - SLOW_DELIVERED, "delivered": SLOW_DELIVERED, "dead": 0}
    assert slow["health"]["state"] == "ok"  # the existing fields stay
    backlog = slow["backlog"]
    assert set(backlog) == {"pending", "delivered_in_window", "window_seconds", "rate_per_minute", "rate_per_second",
                            "oldest_pending_at", "oldest_pending_age_seconds"}
    assert backlog["pending"] == 1_500
    assert backlog["delivered_in_window"] == SLOW_DELIVERED
    assert backlog["window_seconds"] == 300
    assert backlog["rate_per_minute"] == 12.0
    assert backlog["rate_per_second"] == 0.2
    assert datetime.fromisoformat(backlog["oldest_pending_at"]) == seeded.published_at
    # Measured when the request was answered: between its start and its end.
    age = backlog["oldest_pending_age_seconds"]
    assert (before - seeded.published_at).total_seconds() <= age <= (after - seeded.published_at).total_seconds()
    assert age >= 7 * 60

    fast = views["fast-bus"]["backlog"]
    assert (fast["pending"], fast["delivered_in_window"], fast["rate_per_minute"], fast["rate_per_second"]) == (
        0, BURST, 312.0, 5.2)
    assert (fast["oldest_pending_at"], fast["oldest_pending_age_seconds"]) == (None, None)

    idle = views["idle-bus"]["backlog"]
    assert (idle["pending"], idle["delivered_in_window"], idle["rate_per_minute"], idle["oldest_pending_at"],
            idle["oldest_pending_age_seconds"], idle["window_seconds"]) == (0, 0, 0.0, None, None, 300)

    assert single.status_code == 200, single.text
    assert single.json()["backlog"]["pending"] == 1_500
    assert single.json()["backlog"]["oldest_pending_at"] == backlog["oldest_pending_at"]


@pytest.fixture
def page_errors() -> list[str]:
    return []


@pytest.fixture
def page(browser: Any, live_server: LiveServer, page_errors: list[str]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()


def test_the_page_shows_pending_rate_and_oldest_age_per_target(page: Any, live_server: LiveServer,
                                                               page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    seeded = seed(live_server.engine)
    page.goto(f"{live_server.url}/demobank/targets")

    table = page.get_by_test_id("targets-table")
    expect(table.locator("thead th")).to_have_text(
        ["Name", "Kind", "Destination", "Filter", "State", "Deliveries", "Pending", "Delivery rate",
         "Oldest pending", "Latest error", "Actions"])
    rows = page.get_by_test_id("target-row")
    expect(rows).to_have_count(3)
    slow = rows.filter(has_text="slow-bus")
    fast = rows.filter(has_text="fast-bus")
    idle = rows.filter(has_text="idle-bus")

    expect(slow.get_by_test_id("backlog-pending")).to_have_text("1,500")
    expect(slow.get_by_test_id("backlog-rate")).to_have_text("12/min over the last 5 min")
    expect(slow.get_by_test_id("backlog-delivered")).to_have_text("60 delivered")
    oldest = slow.get_by_test_id("backlog-oldest")
    expect(oldest).to_have_text(re.compile(r"^7 min( \d{1,2} s)?$"))
    expect(oldest).to_have_attribute("data-slow", "true")
    expect(oldest).to_have_attribute("title", "waiting longer than 5 min: this target is not keeping up")
    expect(slow).to_contain_text("since " + seeded.published_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    expect(slow.get_by_test_id("pending")).to_have_text("pending 1500")  # the counts per status stay

    expect(fast.get_by_test_id("backlog-pending")).to_have_text("0")
    expect(fast.get_by_test_id("backlog-rate")).to_have_text("312/min over the last 5 min")
    expect(fast.get_by_test_id("backlog-delivered")).to_have_text("1,560 delivered · 5.2/s")
    expect(fast.get_by_test_id("backlog-oldest")).to_have_text("—")
    expect(fast.get_by_test_id("backlog-oldest")).to_have_attribute("data-slow", "false")

    expect(idle.get_by_test_id("backlog-pending")).to_have_text("0")
    expect(idle.get_by_test_id("backlog-rate")).to_have_text("0/min over the last 5 min")
    expect(idle.get_by_test_id("backlog-delivered")).to_have_text("0 delivered")
    expect(idle.get_by_test_id("backlog-oldest")).to_have_text("—")

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "targets_backlog.png"
    screenshot.unlink(missing_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # The page's Refresh shows what the dispatcher did meanwhile.
    deliver(live_server.engine, seeded.slow, 500)
    page.get_by_test_id("refresh").click()
    expect(slow.get_by_test_id("backlog-pending")).to_have_text("1,000")
    expect(slow.get_by_test_id("backlog-rate")).to_have_text("112/min over the last 5 min")
    expect(slow.get_by_test_id("backlog-delivered")).to_have_text("560 delivered · 1.9/s")
    expect(slow.get_by_test_id("backlog-oldest")).to_have_text(re.compile(r"^7 min( \d{1,2} s)?$"))
    expect(page.get_by_test_id("error-banner")).to_be_hidden()
    assert page_errors == []
