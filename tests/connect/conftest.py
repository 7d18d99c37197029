"""Fixtures for the Connect tests: the vendor sandbox over HTTP, a migrated suite database, connections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy.engine import Engine

from demobank.sandbox.settings import DEFAULT_SENDGRID_API_KEY, DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN
from demobank.sandbox.testing import running_sandbox


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
                   extra={"from_number": "+15005550006", "rate_limit_per_second": 500})
    return "twilio_default"


@pytest.fixture
def sendgrid_conn(monkeypatch, sandbox: Sandbox) -> str:
    set_connection(monkeypatch, "sendgrid_default", conn_type="sendgrid", host=sandbox.url,
                   password=DEFAULT_SENDGRID_API_KEY, extra={"from_email": "noreply@demobank.example",
                                                              "from_name": "Demo Bank"})
    return "sendgrid_default"
