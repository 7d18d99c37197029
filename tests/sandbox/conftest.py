"""Fixtures: one sandbox server for the session (cleared before every test) and real SDK clients on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from demobank.sandbox.settings import (
    DEFAULT_MCD_ID,
    DEFAULT_MCD_TOKEN,
    DEFAULT_SENDGRID_API_KEY,
    DEFAULT_TWILIO_ACCOUNT_SID,
    DEFAULT_TWILIO_AUTH_TOKEN,
)
from demobank.sandbox.store import SandboxStore
from demobank.sandbox.testing import running_sandbox, sandbox_db_path

#: A small mail size limit for the session server, so the 413 test does not need 30 MB.
TEST_MAX_MAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class Sandbox:
    """A running sandbox: its URL and its SQLite file."""

    base_url: str
    db_path: Path
    store: SandboxStore

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture(scope="session")
def sandbox_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("sandbox")
    with running_sandbox(directory, sendgrid_max_body_bytes=TEST_MAX_MAIL_BYTES) as base_url:
        db_path = sandbox_db_path(directory)
        yield Sandbox(base_url=base_url, db_path=db_path, store=SandboxStore(db_path))


@pytest.fixture
def sandbox(sandbox_session: Sandbox) -> Sandbox:
    """The session sandbox, with no recorded messages and no faults."""
    sandbox_session.store.clear()
    sandbox_session.store.reset_faults()
    return sandbox_session


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def twilio_client(sandbox: Sandbox):
    from twilio.rest import Client

    client = Client(DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN)
    client.api.base_url = sandbox.base_url
    return client


@pytest.fixture
def sendgrid_client(sandbox: Sandbox):
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(DEFAULT_SENDGRID_API_KEY, host=sandbox.base_url)
    client.client.timeout = 10
    return client


@pytest.fixture
def no_mcd_env_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """pycarlo lets MCD_API_ENDPOINT (read at import) override explicit endpoints: neutralise it."""
    import pycarlo.core.session

    monkeypatch.setattr(pycarlo.core.session, "MCD_API_ENDPOINT", None)


@pytest.fixture
def mcd_session_factory(no_mcd_env_endpoint: None):
    from pycarlo.core import Session

    def make(endpoint: str, *, token: str = DEFAULT_MCD_TOKEN, gateway: bool = False) -> Session:
        return Session(
            mcd_id=DEFAULT_MCD_ID,
            mcd_token=token,
            endpoint=endpoint,
            scope="AirflowCallbacks" if gateway else None,
        )

    return make
