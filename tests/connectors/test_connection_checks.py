"""The hooks' test_connection() (the UI's Test button and the connection-check DAG) against the sandbox."""

from __future__ import annotations

import json

import pytest

from demobank.connectors.health import check_connection, require_connection
from demobank.sandbox.settings import DEFAULT_SENDGRID_API_KEY, DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN
from demobank.sandbox.testing import running_sandbox


@pytest.fixture(scope="module")
def sandbox_url(tmp_path_factory):
    with running_sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.db") as base_url:
        yield base_url


def _set_conn(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_twilio_connection_ok(monkeypatch, sandbox_url) -> None:
    _set_conn(monkeypatch, "twilio_default", conn_type="twilio", host=sandbox_url,
              login=DEFAULT_TWILIO_ACCOUNT_SID, password=DEFAULT_TWILIO_AUTH_TOKEN)
    result = check_connection("twilio_default")
    assert result.ok, result.message
    assert DEFAULT_TWILIO_ACCOUNT_SID in result.message


def test_twilio_wrong_token_is_explained(monkeypatch, sandbox_url) -> None:
    _set_conn(monkeypatch, "twilio_default", conn_type="twilio", host=sandbox_url,
              login=DEFAULT_TWILIO_ACCOUNT_SID, password="wrong")
    result = check_connection("twilio_default")
    assert not result.ok
    assert "20003" in result.message or "401" in result.message
    with pytest.raises(ConnectionError, match="'twilio_default' failed its test"):
        require_connection("twilio_default")


def test_twilio_login_that_is_not_an_account_sid(monkeypatch, sandbox_url) -> None:
    _set_conn(monkeypatch, "twilio_default", conn_type="twilio", host=sandbox_url, login="me", password="x")
    result = check_connection("twilio_default")
    assert not result.ok
    assert "Account SID" in result.message


def test_sendgrid_connection_ok_and_wrong_key(monkeypatch, sandbox_url) -> None:
    _set_conn(monkeypatch, "sendgrid_default", conn_type="sendgrid", host=sandbox_url,
              password=DEFAULT_SENDGRID_API_KEY)
    assert check_connection("sendgrid_default").ok
    _set_conn(monkeypatch, "sendgrid_default", conn_type="sendgrid", host=sandbox_url, password="SG.wrong")
    result = check_connection("sendgrid_default")
    assert not result.ok
    assert "401" in result.message or "Unauthorized" in result.message


def test_missing_connection_says_where_to_add_it() -> None:
    result = check_connection("no_such_connection_here")
    assert not result.ok
    assert "does not exist" in result.message and "airflow_settings.yaml" in result.message
