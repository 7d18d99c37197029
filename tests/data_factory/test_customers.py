"""The customer sync against the sandbox's demo core banking API over HTTP (real ``requests``, real routes): pages,
the watermark, ``customer.created`` for new customers only, retries, and refusals that lose nothing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select, text
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from demobank.data_factory import customers as cs
from demobank.data_factory.quality import run_detail
from demobank.db.engine import get_engine
from demobank.db.migrate import upgrade
from demobank.db.models import OutboxEvent
from demobank.events.catalog import get_catalog
from demobank.retry import RetryPolicy
from demobank.sandbox.app import create_app
from demobank.sandbox.settings import DEFAULT_CORE_BANKING_TOKEN, SandboxSettings
from demobank.sandbox.testing import serving
from tests.data_factory.fixtures import TEST_CUSTOMERS, sqlite_source_fixture  # noqa: F401 - fixture
from tests.db.conftest import _isolated_engines  # noqa: F401 - autouse fixture

NEW_CUSTOMER = ("CUST-900001", "Ada Example", "ada@example.com", "individual", "premier", "GB", "en-GB", "partner",
                "pending", "true", "2026-11-26T09:00:00Z", "2026-11-26T09:00:00Z")


class Faults:
    """A switch in front of the sandbox: answer the next ``failures`` requests with ``status``."""

    def __init__(self) -> None:
        self.failures = 0
        self.status = 503
        self.seen = 0


@pytest.fixture
def source(sqlite_source: str, tmp_path: Path) -> Path:
    """A private copy of the seeded source (the tests add and change customers)."""
    path = tmp_path / "core_banking.db"
    with sqlite3.connect(sqlite_source.removeprefix("sqlite:///")) as original, sqlite3.connect(path) as copy:
        original.backup(copy)
    return path


@pytest.fixture
def api(source: Path, tmp_path: Path) -> Iterator[tuple[str, Faults]]:
    faults = Faults()
    sandbox = create_app(SandboxSettings(db_path=tmp_path / "sandbox.db", core_banking_url=f"sqlite:///{source}"))

    async def switch(request: Request, call_next):  # type: ignore[no-untyped-def]
        faults.seen += 1
        if faults.failures > 0:
            faults.failures -= 1
            return JSONResponse({"detail": "injected"}, status_code=faults.status, headers={"Retry-After": "0"})
        return await call_next(request)

    app = Starlette()
    app.add_middleware(BaseHTTPMiddleware, dispatch=switch)
    app.mount("/sandbox", sandbox)
    with serving(app) as base:
        yield f"{base}/sandbox/core-banking", faults


def client(base: str, **options: object) -> cs.CustomerApiClient:
    return cs.CustomerApiClient(base_url=base, token=DEFAULT_CORE_BANKING_TOKEN,
                                retry=RetryPolicy(attempts=4, initial=0.01, maximum=0.05, jitter=0), **options)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[str, str]:
    suite = f"sqlite:///{tmp_path / 'demobank.db'}"
    upgrade(suite)
    return f"sqlite:///{tmp_path / 'warehouse.db'}", suite


def test_the_first_sync_is_a_backfill_then_only_changes_come_and_new_customers_are_announced(
        api: tuple[str, Faults], source: Path, stores: tuple[str, str]) -> None:
    base, _ = api
    warehouse_url, suite_url = stores
    warehouse, suite = get_engine(warehouse_url), get_engine(suite_url)

    first = cs.sync_step(dag_id=cs.DAG_ID, run_id="sync-1", task_id="sync_customers", warehouse_url=warehouse_url,
                         client=client(base), suite_engine=suite)
    assert (first["received"], first["upserted"], first["queued"], first["watermark_before"]) == (
        TEST_CUSTOMERS, TEST_CUSTOMERS, 0, None)
    assert first["pages"] == 1 and first["watermark_after"] <= "2026-01-08"
    assert cs.publish_step(dag_id=cs.DAG_ID, run_id="sync-1", warehouse_url=warehouse_url,
                           suite_engine=suite) == {"published": 0}

    with sqlite3.connect(source) as db:  # a customer is onboarded, another one changes segment
        db.execute(f"INSERT INTO customers VALUES ({', '.join('?' * len(NEW_CUSTOMER))})", NEW_CUSTOMER)
        db.execute("UPDATE customers SET segment = 'premier', updated_at = '2026-11-26T09:30:00Z' "
                   "WHERE customer_id = 'CUST-100001'")
    second = cs.sync_customers(client(base), warehouse, run_id="sync-2", page_size=1)
    # page by page: the customer at the old watermark (read again, unchanged) and the two changes
    assert (second.pages, second.received, second.upserted, second.queued) == (3, 3, 2, 1)
    assert second.watermark_after == "2026-11-26T09:30:00Z"
    assert cs.publish_customer_events(warehouse, suite) == 1
    assert cs.publish_customer_events(warehouse, suite) == 0  # the queue is empty

    with suite.connect() as connection:
        envelope = json.loads(connection.execute(select(OutboxEvent.envelope)).scalar())
    assert envelope["type"] == "customer.created" and envelope["subject"] == "CUST-900001"
    assert envelope["data"] == {"customer_id": "CUST-900001", "customer_type": "individual", "segment": "premier",
                                "country_of_residence": "GB", "preferred_language": "en-GB",
                                "onboarding_channel": "partner", "kyc_status": "pending", "marketing_consent": True,
                                "created_at": "2026-11-26T09:00:00Z"}
    assert not get_catalog().get("customer.created").problems(envelope["data"], "data")
    assert "full_name" not in envelope["data"]  # no personal data in the event

    third = cs.sync_customers(client(base), warehouse, run_id="sync-3")
    assert (third.upserted, third.queued) == (0, 0)  # the boundary is read again and changes nothing
    with warehouse.connect() as connection:
        assert connection.execute(text("SELECT segment FROM customers WHERE customer_id = 'CUST-100001'")
                                  ).scalar() == "premier"
    record = run_detail(suite, cs.DAG_ID, "sync-1")
    assert record["status"] == "success" and record["rows_in"] == TEST_CUSTOMERS


def test_a_backfill_can_be_announced(api: tuple[str, Faults], stores: tuple[str, str]) -> None:
    base, _ = api
    warehouse = get_engine(stores[0])
    report = cs.sync_customers(client(base), warehouse, run_id="s", publish_backfill=True)
    assert report.queued == TEST_CUSTOMERS


def test_429_and_5xx_are_retried_and_honoured(api: tuple[str, Faults], stores: tuple[str, str]) -> None:
    base, faults = api
    faults.failures, faults.status = 2, 503
    report = cs.sync_customers(client(base), get_engine(stores[0]), run_id="s")
    assert report.received == TEST_CUSTOMERS and faults.seen == 3


def test_an_api_that_stays_down_fails_the_sync_and_keeps_the_watermark(api: tuple[str, Faults],
                                                                       stores: tuple[str, str]) -> None:
    base, faults = api
    warehouse = get_engine(stores[0])
    faults.failures, faults.status = 100, 500
    with pytest.raises(cs.CustomerApiError, match=r"still failing after 4 attempts: 500"):
        cs.sync_customers(client(base), warehouse, run_id="s")
    assert cs.read_watermark(warehouse) is None


def test_a_wrong_token_fails_at_once_with_what_to_fix(api: tuple[str, Faults], stores: tuple[str, str]) -> None:
    base, faults = api
    bad = cs.CustomerApiClient(base_url=base, token="wrong")
    with pytest.raises(cs.CustomerApiError, match=r"answered 401.*connection's password"):
        cs.sync_customers(bad, get_engine(stores[0]), run_id="s")
    assert faults.seen == 1


def test_malformed_records_fail_the_sync_naming_them_and_nothing_is_lost(api: tuple[str, Faults], source: Path,
                                                                         stores: tuple[str, str]) -> None:
    base, _ = api
    warehouse = get_engine(stores[0])
    cs.sync_customers(client(base), warehouse, run_id="s1")
    watermark = cs.read_watermark(warehouse)
    with sqlite3.connect(source) as db:
        db.execute("UPDATE customers SET kyc_status = 'maybe', updated_at = '2026-11-26T10:00:00Z' "
                   "WHERE customer_id = 'CUST-100002'")
    with pytest.raises(cs.CustomerDataError, match=r"CUST-100002: kyc_status 'maybe' is not one of pending, verified"):
        cs.sync_customers(client(base), warehouse, run_id="s2")
    assert cs.read_watermark(warehouse) == watermark


# -- the sandbox's demo API itself ------------------------------------------------------------------------------


def test_the_demo_api_pages_in_order_and_refuses_bad_requests(api: tuple[str, Faults]) -> None:
    base, _ = api
    auth = {"Authorization": f"Bearer {DEFAULT_CORE_BANKING_TOKEN}"}
    page = requests.get(f"{base}/customers", params={"page_size": 120}, headers=auth, timeout=10).json()
    assert (page["total"], page["page"], page["next_page"], len(page["customers"])) == (TEST_CUSTOMERS, 1, 2, 120)
    stamps = [(c["updated_at"], c["customer_id"]) for c in page["customers"]]
    assert stamps == sorted(stamps)
    last = requests.get(f"{base}/customers", params={"page_size": 120, "page": 3}, headers=auth, timeout=10).json()
    assert last["next_page"] is None and len(last["customers"]) == TEST_CUSTOMERS - 240
    since = requests.get(f"{base}/customers", params={"updated_since": stamps[-1][0]}, headers=auth, timeout=10)
    assert since.json()["total"] == TEST_CUSTOMERS - 119 - sum(s[0] == stamps[-1][0] for s in stamps[:-1])

    assert requests.get(f"{base}/customers", timeout=10).status_code == 401
    bad = requests.get(f"{base}/customers", params={"updated_since": "yesterday"}, headers=auth, timeout=10)
    assert bad.status_code == 400 and "RFC 3339" in bad.json()["detail"]
    assert requests.get(f"{base}/customers", params={"page_size": 5000}, headers=auth, timeout=10).status_code == 400


def test_the_demo_api_says_when_its_source_is_missing(tmp_path: Path) -> None:
    app = create_app(SandboxSettings(db_path=tmp_path / "sandbox.db",
                                     core_banking_url=f"sqlite:///{tmp_path / 'none.db'}"))
    with serving(app) as base:
        answer = requests.get(f"{base}/core-banking/customers", timeout=10,
                              headers={"Authorization": f"Bearer {DEFAULT_CORE_BANKING_TOKEN}"})
    assert answer.status_code == 503 and "python -m demobank.data_factory.core_banking seed" in answer.json()["detail"]


_ = Response  # imported for the middleware's type
