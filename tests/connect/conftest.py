"""Fixtures for the Connect tests: the vendor sandbox over HTTP, a migrated suite database (SQLite, PostgreSQL),
connections. The connections set ``reconcile_after_seconds`` to 0: the sandbox's lookups show a send at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy.engine import Engine

from demobank.sandbox.settings import DEFAULT_SENDGRID_API_KEY, DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN
from demobank.sandbox.testing import running_sandbox
from tests.db.conftest import postgres_admin_url, postgres_url  # noqa: F401 - fixtures reused here


@dataclass
class Sandbox:
    url: str

    def messages(self, channel: str, limit: int = 10000, to: str | None = None) -> list[dict]:
        params: dict[str, object] = {"channel": channel, "limit": limit}
        if to:
            params["to"] = to
        response = requests.get(f"{self.url}/messages", params=params, timeout=30)
        response.raise_for_status()
        return response.json()["messages"]

    def faults(self, **config: object) -> None:
        requests.put(f"{self.url}/faults", json=config, timeout=30).raise_for_status()

    def wait_until_idle(self, timeout: float = 60.0) -> None:
        """Wait until the sandbox has handled every send request it received (held hangs ended): from then on a
        lookup shows every send that reached it, which is what a provider's reconcile_after_seconds stands for."""
        deadline = time.monotonic() + timeout
        while (busy := requests.get(f"{self.url}/health", timeout=30).json()["sends_in_progress"]):
            if time.monotonic() > deadline:
                raise AssertionError(f"the sandbox is still handling sends after {timeout:g}s: {busy}")
            time.sleep(0.05)

    def reset(self) -> None:
        requests.delete(f"{self.url}/faults", timeout=30).raise_for_status()
        requests.delete(f"{self.url}/messages", timeout=30).raise_for_status()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("connect-sandbox")) as url:
        yield Sandbox(url)


@pytest.fixture
def clean_sandbox(sandbox: Sandbox) -> Sandbox:
    sandbox.reset()
    return sandbox


@pytest.fixture
def postgres_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A migrated suite database on a fresh, uniquely named PostgreSQL database (tests/db's fixtures)."""
    from demobank.db.engine import dispose_engines, get_engine
    from demobank.db.migrate import upgrade

    url = request.getfixturevalue("postgres_url")
    upgrade(url)
    yield get_engine(url)
    dispose_engines()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_engine(request: pytest.FixtureRequest) -> Engine:
    """The suite database on each supported backend (SQLite: also the `demobank_db` connection)."""
    return request.getfixturevalue("suite_engine" if request.param == "sqlite" else "postgres_engine")


@pytest.fixture
def suite_engine(tmp_path, monkeypatch) -> Iterator[Engine]:
    """A migrated SQLite suite database, also reachable as the `demobank_db` connection (DEMOBANK_DB_URL)."""
    from demobank.db.engine import dispose_engines, get_engine
    from demobank.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'demobank.db'}"
    upgrade(url)
    monkeypatch.setenv("DEMOBANK_DB_URL", url)
    yield get_engine(url)
    dispose_engines()


def set_connection(monkeypatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.fixture
def twilio_conn(monkeypatch, sandbox: Sandbox) -> str:
    set_connection(monkeypatch, "twilio_default", conn_type="twilio", host=sandbox.url,
                   login=DEFAULT_TWILIO_ACCOUNT_SID, password=DEFAULT_TWILIO_AUTH_TOKEN,
                   extra={"from_number": "+15005550006", "rate_limit_per_second": 500,
                          "reconcile_after_seconds": 0})
    return "twilio_default"


@pytest.fixture
def sendgrid_conn(monkeypatch, sandbox: Sandbox) -> str:
    set_connection(monkeypatch, "sendgrid_default", conn_type="sendgrid", host=sandbox.url,
                   password=DEFAULT_SENDGRID_API_KEY, extra={"from_email": "noreply@demobank.example",
                                                              "from_name": "Demo Bank", "reconcile_after_seconds": 0})
    return "sendgrid_default"
