"""Fixtures for the plugin app's Events API and Targets page: a migrated SQLite file per test, a recording
``announce``, the routers on bare FastAPI apps and the whole plugin app, signed in as a user of a role of Airflow's
simple auth manager (the one of `make run`; the permission checks are the real ones, only the sign-in is replaced)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine
from demobank.db.models import EventDelivery, OutboxEvent
from tests.db.conftest import _isolated_engines, sqlite_url  # noqa: F401 - fixtures (the first autouse)


@dataclass
class Announcer:
    """A stand-in for ``announce_outbox_update``: records each call and answers ``started``."""

    started: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, extra: dict[str, Any]) -> bool:
        self.calls.append(dict(extra))
        return self.started


@pytest.fixture
def db_url(sqlite_url: str) -> str:  # noqa: F811
    """A fresh SQLite file migrated to head."""
    from demobank.db.migrate import upgrade

    upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


@pytest.fixture
def announcer() -> Announcer:
    return Announcer()


ROLES = ("viewer", "user", "op", "admin")
"""The roles of Airflow's simple auth manager, least to most."""


def user_of(role: str | None, name: str | None = None) -> Any:
    """A signed-in user of the simple auth manager with ``role`` (named after it unless ``name``)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return SimpleAuthManagerUser(username=name or f"{role}-tester", role=role)


def sign_in(app: FastAPI, role: str | None, *, manager: Any = None, name: str | None = None) -> Any:
    """Answer ``app``'s permission questions with the simple auth manager (or ``manager``) for a user of ``role``;
    return the user. Called again, it switches the user for the next requests."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    from demobank.ui.permissions import use_auth_manager

    user = user_of(role, name)
    use_auth_manager(app, manager or SimpleAuthManager(), user)
    return user


def events_app(engine: Engine, announce: Callable[[dict[str, Any]], bool], *, role: str = "op") -> FastAPI:
    """The events router at ``/api/v1``, signed in as a user of ``role``."""
    from demobank.ui.events_api import create_router

    app = FastAPI()
    app.include_router(create_router(lambda: engine, announce), prefix="/api/v1")
    sign_in(app, role)
    return app


def plugin_app(engine: Engine, announce: Callable[[dict[str, Any]], bool], *, role: str | None = "op") -> FastAPI:
    """The whole plugin app (``demobank.ui.app.create_app``) on the test's database, with the test DAG lookup,
    signed in as a user of ``role`` (``None``: not signed in, Airflow's own sign-in answers)."""
    from demobank.ui.app import create_app

    app = create_app(engine_factory=lambda: engine, announce=announce, dag_lookup=known_dag)
    if role is not None:
        sign_in(app, role)
    return app


def mounted(app: FastAPI) -> FastAPI:
    """``app`` under ``/demobank``, as the plugin mounts it in Airflow's API server (the pages' relative URLs)."""
    root = FastAPI()
    root.mount("/demobank", app)
    return root


@contextmanager
def serving(app: FastAPI, port: int, name: str) -> Iterator[None]:
    """Serve ``app`` with uvicorn on 127.0.0.1:``port`` in a thread until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail(f"uvicorn did not start on 127.0.0.1:{port} within 20 s")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def client(engine: Engine, announcer: Announcer) -> Iterator[TestClient]:
    with TestClient(events_app(engine, announcer)) as test_client:
        yield test_client


def count_rows(engine: Engine, model: type[Any]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def outbox_count(engine: Engine) -> int:
    return count_rows(engine, OutboxEvent)


def delivery_count(engine: Engine) -> int:
    return count_rows(engine, EventDelivery)


@dataclass
class LiveServer:
    url: str
    engine: Engine
    announcer: Announcer
    app: FastAPI | None = None
    """The plugin app served (for :meth:`sign_in`)."""

    def sign_in(self, role: str, *, manager: Any = None, name: str | None = None) -> Any:
        """Switch the signed-in user of the next requests (see :func:`sign_in`)."""
        assert self.app is not None, "this server does not serve the plugin app"
        return sign_in(self.app, role, manager=manager, name=name)


@pytest.fixture
def live_server(engine: Engine, announcer: Announcer) -> Iterator[LiveServer]:
    """The whole plugin app under ``/demobank``, signed in as ``operator`` (role op), served by uvicorn on a free port
    of 127.0.0.1 in a background thread; ``live_server.sign_in(role)`` switches the user."""

    from tests.conftest import free_port

    app = plugin_app(engine, announcer, role=None)
    sign_in(app, "op", name="operator")
    port = free_port()
    with serving(mounted(app), port, "targets-page-uvicorn"):
        yield LiveServer(f"http://127.0.0.1:{port}", engine, announcer, app)


# -- the Data Quality tab ------------------------------------------------------------------------------------------

QUALITY_DAG = "data_factory_transactions"
#: What the tests' stand-in for Airflow's metadata database knows (tags decide what is a Data Factory DAG).
KNOWN_DAGS: dict[str, frozenset[str]] = {
    "data_factory_transactions": frozenset({"data_factory"}),
    "data_factory_customer_sync": frozenset({"data_factory"}),
    "events_dispatch": frozenset({"events"}),
}
#: The failed run's error: HTML special characters that the page must show as text.
HTML_ERROR = ('50.0% of the rows of 2026-01-09 are bad (1,000 of 2,000), above the threshold of 10.0% '
              '<img src=x onerror="window.pwned=1"> & <b>"quotes"</b>')
MISSING_SOURCE_ERROR = ("the core banking source has no export for business day 2025-12-31: run the export, or "
                        "trigger with conf {\"date\": \"YYYY-MM-DD\"} for an exported day")


@dataclass(frozen=True)
class QualityRuns:
    """The run ids of the recorded scenario (oldest first)."""

    success: str
    failed_load: str
    failed_source: str
    running: str | None = None


def _record_quality_run(engine: Engine, dag_id: str, run_id: str, day: str, *, rows_in: int = 0, bad: int = 0,
                        threshold: float = 0.10, fail_at: str | None = None, error: str | None = None,
                        finish: bool = True) -> None:
    """Write one run's record through ``QualityRecorder`` in the order and shape the pipeline's steps write it
    (``demobank.data_factory.transactions``): check_source, validate_and_load, publish_events."""
    from datetime import date

    from demobank.data_factory.quality import CheckResult, QualityRecorder, TableCounts
    from demobank.db.models import QualityRunStatus

    recorder = QualityRecorder(engine, dag_id, run_id)
    recorder.start(date.fromisoformat(day), max_bad_share=threshold)
    if not finish:
        return
    if fail_at == "check_source":
        recorder.checks("check_source", [CheckResult("source_available", "source", "failed", message=error,
                                                     table="core_banking.export_batches")])
        recorder.finish(QualityRunStatus.FAILED, failed_task="check_source", error=error)
        return
    recorder.checks("check_source", [CheckResult("source_available", "source", "passed", checked_rows=rows_in,
                                                 message=f"export of {day} found: {rows_in} rows",
                                                 table="core_banking.export_batches")])
    good, share = rows_in - bad, bad / rows_in
    failing = fail_at == "validate_and_load"
    recorder.checks("validate_and_load", [
        CheckResult("required_fields", "nulls", "warning" if bad else "passed", checked_rows=rows_in,
                    failed_rows=bad // 2, message="transaction_id, account_id, amount are present",
                    table="core_banking.transactions"),
        CheckResult("amount_positive", "amount", "warning" if bad else "passed", checked_rows=rows_in,
                    failed_rows=bad - bad // 2, message="amount is above zero", table="core_banking.transactions"),
        CheckResult("export_complete", "volume", "passed", checked_rows=rows_in,
                    message=f"{rows_in:,} rows read", table="core_banking.transactions"),
        CheckResult("bad_share_threshold", "gate", "failed" if share > threshold else "passed",
                    checked_rows=rows_in, failed_rows=bad,
                    message=f"{share:.2%} bad rows ({bad:,} of {rows_in:,}); threshold {threshold:.2%}",
                    table="core_banking.transactions"),
    ])
    recorder.tables([
        TableCounts("core_banking.transactions", "sqlite:///core_banking.db/transactions", rows_in=rows_in,
                    rows_out=good, rows_quarantined=bad),
        TableCounts("warehouse.transactions", "sqlite:///warehouse.db/transactions", rows_in=good,
                    rows_out=0 if failing else good,
                    detail={"inserted": 0 if failing else good, "changed": 0, "unchanged": 0,
                            "committed": not failing}),
        TableCounts("warehouse.quarantine_transactions", "sqlite:///warehouse.db/quarantine_transactions",
                    rows_in=bad, rows_out=bad, rows_quarantined=bad),
    ])
    recorder.update(rows_in=rows_in, rows_loaded=0 if failing else good, rows_quarantined=bad, bad_share=share,
                    max_bad_share=threshold)
    if failing:
        recorder.finish(QualityRunStatus.FAILED, failed_task="validate_and_load", error=error)
        return
    recorder.update(events_published=good)
    recorder.tables([TableCounts("demobank.outbox_events", "demobank://events/outbox", rows_out=good,
                                 detail={"event_type": "transaction.created"})])
    recorder.finish(QualityRunStatus.SUCCESS)


@pytest.fixture
def record_quality_run(engine: Engine) -> Callable[..., None]:
    """``record(dag_id, run_id, day, rows_in=, bad=, threshold=, fail_at=, error=, finish=)``: one run's record."""
    return lambda dag_id, run_id, day, **kwargs: _record_quality_run(engine, dag_id, run_id, day, **kwargs)


@pytest.fixture
def quality_runs(engine: Engine) -> QualityRuns:
    """The runs the Data Quality tab is checked with (like `make run`'s end-to-end days): a sample day with 5%
    quarantined, a day that fails in validate_and_load (50% bad, an error with HTML special characters), a day
    that fails in check_source, recorded in this order."""
    runs = QualityRuns("manual__2026-01-08T10:00:00+00:00", "manual__2026-01-09T10:00:00+00:00",
                       "manual__2025-12-31T10:00:00+00:00")
    _record_quality_run(engine, QUALITY_DAG, runs.success, "2026-01-08", rows_in=2_000, bad=100)
    _record_quality_run(engine, QUALITY_DAG, runs.failed_load, "2026-01-09", rows_in=2_000, bad=1_000,
                        fail_at="validate_and_load", error=HTML_ERROR)
    _record_quality_run(engine, QUALITY_DAG, runs.failed_source, "2025-12-31", fail_at="check_source",
                        error=MISSING_SOURCE_ERROR)
    return runs


def known_dag(dag_id: str) -> Any:
    """The tests' stand-in for Airflow's metadata database (``quality_api.airflow_dag_info``)."""
    from demobank.ui.quality_api import DagInfo

    tags = KNOWN_DAGS.get(dag_id)
    return DagInfo(exists=tags is not None, tags=tags or frozenset())


@pytest.fixture
def montecarlo_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    """A Monte Carlo connection (from the environment) whose links open ``https://mc.example.test``."""
    import json

    monkeypatch.setenv("AIRFLOW_CONN_MONTECARLO_DEFAULT", json.dumps(
        {"conn_type": "montecarlo", "host": "http://127.0.0.1:9/sandbox",
         "extra": {"ui_url": "https://mc.example.test", "ui_path": "/jobs?search={dag_id}"}}))
    return "https://mc.example.test"


def quality_app(engine: Engine, role: str = "viewer") -> FastAPI:
    """The Data Quality routes, as the plugin app has them under ``/demobank``, signed in as a user of ``role``."""
    from demobank.ui.quality_api import create_router

    app = FastAPI()
    app.include_router(create_router(lambda: engine, known_dag), prefix="/demobank")
    sign_in(app, role)
    return app


@pytest.fixture
def quality_client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(quality_app(engine)) as test_client:
        yield test_client


@pytest.fixture
def quality_live_server(engine: Engine, announcer: Announcer) -> Iterator[LiveServer]:
    """The Data Quality page and API served by uvicorn on a free port of 127.0.0.1, in a background thread."""

    from demobank.ui.quality_api import monte_carlo_links
    from tests.conftest import free_port

    # Import Airflow's SDK (the Monte Carlo links read a connection) before the browser's first request: it takes
    # seconds once per process, which the API server has long paid when a user opens the tab.
    monte_carlo_links(QUALITY_DAG)

    port = free_port()
    with serving(quality_app(engine), port, "quality-page-uvicorn"):
        yield LiveServer(f"http://127.0.0.1:{port}", engine, announcer)
