"""Recording: durable, shared by servers/processes on one file, readable over HTTP and from Python."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail
from twilio.rest import Client

from demobank.sandbox.faults import FaultConfig
from demobank.sandbox.settings import (
    DEFAULT_MCD_ID,
    DEFAULT_MCD_TOKEN,
    DEFAULT_SENDGRID_API_KEY,
    DEFAULT_SENDGRID_MAX_BODY_BYTES,
    DEFAULT_TWILIO_ACCOUNT_SID,
    DEFAULT_TWILIO_AUTH_TOKEN,
    SandboxSettings,
)
from demobank.sandbox.store import SandboxStore
from demobank.sandbox.testing import running_sandbox
from tests.conftest import PROJECT_DIR, free_port

TWILIO_AUTH = (DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN)
MESSAGES_PATH = f"/2010-04-01/Accounts/{DEFAULT_TWILIO_ACCOUNT_SID}/Messages.json"
MCD_HEADERS = {"x-mcd-id": DEFAULT_MCD_ID, "x-mcd-token": DEFAULT_MCD_TOKEN}


def send_one_of_each(base_url: str) -> tuple[str, str]:
    twilio = Client(DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN)
    twilio.api.base_url = base_url
    sid = twilio.messages.create(to="+15551230001", from_="+15557650002", body="persist me").sid
    sendgrid = SendGridAPIClient(DEFAULT_SENDGRID_API_KEY, host=base_url)
    message_id = sendgrid.send(
        Mail(from_email="n@demobank.example", to_emails="alice@example.com", subject="s", html_content="<p>x</p>")
    ).headers["X-Message-Id"]
    response = requests.post(
        base_url + "/airflow/callbacks",
        json={"airflow_operation": "ping", "airflow_payload": {}},
        headers=MCD_HEADERS,
        timeout=5,
    )
    assert response.status_code == 200
    return sid, message_id


def test_records_survive_a_restart_on_the_same_file(tmp_path):
    with running_sandbox(tmp_path) as first:
        sid, message_id = send_one_of_each(first)
        requests.put(first + "/faults", json={"latency_ms": 7, "channels": ["sms"]}, timeout=5)

    with running_sandbox(tmp_path) as second:
        listed = requests.get(second + "/messages", timeout=5).json()
        faults = requests.get(second + "/faults", timeout=5).json()
        twilio = Client(*TWILIO_AUTH)
        twilio.api.base_url = second
        fetched = twilio.messages(sid).fetch()

    assert {m["channel"] for m in listed["messages"]} == {"sms", "email", "montecarlo"}
    assert fetched.body == "persist me"
    assert faults["latency_ms"] == 7
    store = SandboxStore(tmp_path / "sandbox.db")
    assert store.list_messages("sms")[0]["sid"] == sid
    assert store.list_messages("email")[0]["message_id"] == message_id


def test_two_servers_on_one_file_share_records_and_faults(tmp_path):
    """No in-process state: what one server (worker) accepts or configures, the other sees."""
    with running_sandbox(tmp_path) as a, running_sandbox(tmp_path) as b:

        def send(i: int) -> int:
            base = (a, b)[i % 2]
            return requests.post(
                base + MESSAGES_PATH,
                data={"To": "+15551230001", "From": "+15557650002", "Body": f"#{i}"},
                auth=TWILIO_AUTH,
                timeout=10,
            ).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(send, range(80)))
        assert codes == [201] * 80

        requests.put(a + "/faults", json={"error_rate": 1.0, "error_statuses": [503]}, timeout=5)
        faulted = requests.post(
            b + MESSAGES_PATH,
            data={"To": "+15551230001", "From": "+15557650002", "Body": "x"},
            auth=TWILIO_AUTH,
            timeout=5,
        )
        listed_by_b = requests.get(b + "/messages", params={"channel": "sms", "limit": 1000}, timeout=5).json()

    assert faulted.status_code == 503
    assert listed_by_b["count"] == 80
    assert len({m["sid"] for m in listed_by_b["messages"]}) == 80


def test_listing_is_newest_first_with_limit_and_clear_by_channel(sandbox, http, twilio_client):
    for i in range(3):
        twilio_client.messages.create(to="+15551230001", from_="+15557650002", body=f"n{i}")
    http.post(
        sandbox.url("/airflow/callbacks"),
        json={"airflow_operation": "ping", "airflow_payload": {}},
        headers=MCD_HEADERS,
    )

    listed = http.get(sandbox.url("/messages"), params={"channel": "sms", "limit": 2}).json()
    assert [m["body"] for m in listed["messages"]] == ["n2", "n1"]
    assert [m["body"] for m in sandbox.store.list_messages("sms", 2)] == ["n2", "n1"]
    assert http.get(sandbox.url("/messages")).json()["messages"][0]["channel"] == "montecarlo"

    assert http.delete(sandbox.url("/messages"), params={"channel": "sms"}).json() == {"deleted": 3}
    assert sandbox.store.count_messages("sms") == 0
    assert sandbox.store.count_messages("montecarlo") == 1
    assert http.delete(sandbox.url("/messages")).json() == {"deleted": 1}


@pytest.mark.parametrize(
    "params",
    [{"channel": "fax"}, {"channel": "montecarlo", "to": "x"}],
)
def test_bad_listing_parameters_are_400(sandbox, http, params):
    response = http.get(sandbox.url("/messages"), params=params)
    assert response.status_code == 400
    assert response.json()["detail"]


def test_store_rejects_unknown_channel_and_bad_limit(tmp_path):
    store = SandboxStore(tmp_path / "s.db")
    with pytest.raises(ValueError, match="Unknown sandbox channel 'fax'"):
        store.list_messages("fax")
    with pytest.raises(ValueError, match="limit=0"):
        store.list_messages("sms", 0)


def test_store_creates_wal_file_lazily(tmp_path):
    path = tmp_path / "nested" / "sandbox.db"
    store = SandboxStore(path)
    assert not path.exists()

    store.set_faults(FaultConfig(latency_ms=3))

    assert path.exists()
    assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert SandboxStore(path).get_faults().latency_ms == 3


def test_settings_defaults_are_sandbox_values(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = SandboxSettings.from_env(environ={})

    assert settings.db_path == tmp_path / ".airflow" / "sandbox.db"
    assert settings.twilio_account_sid == "AC" + "0" * 32
    for value in (settings.twilio_auth_token, settings.sendgrid_api_key, settings.mcd_id, settings.mcd_token):
        assert "sandbox" in value
    assert settings.sendgrid_max_body_bytes == DEFAULT_SENDGRID_MAX_BODY_BYTES == 30 * 1024 * 1024


def test_settings_from_env(tmp_path):
    settings = SandboxSettings.from_env(
        environ={
            "DEMOBANK_SANDBOX_DB": str(tmp_path / "x.db"),
            "DEMOBANK_SANDBOX_TWILIO_ACCOUNT_SID": "AC" + "ab" * 16,
            "DEMOBANK_SANDBOX_SENDGRID_MAX_BODY_BYTES": "1024",
            "DEMOBANK_SANDBOX_MCD_TOKEN": "another-sandbox-token",
        }
    )
    assert settings.db_path == tmp_path / "x.db"
    assert settings.twilio_account_sid == "AC" + "ab" * 16
    assert settings.sendgrid_max_body_bytes == 1024
    assert settings.mcd_token == "another-sandbox-token"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DEMOBANK_SANDBOX_TWILIO_ACCOUNT_SID": "AC123"}, "'AC' followed by 32 hexadecimal digits"),
        ({"DEMOBANK_SANDBOX_SENDGRID_MAX_BODY_BYTES": "30MB"}, "not an integer"),
        ({"DEMOBANK_SANDBOX_SENDGRID_MAX_BODY_BYTES": "0"}, "must be a positive number"),
    ],
)
def test_settings_errors_say_what_to_fix(environ, message):
    with pytest.raises(ValueError, match=message):
        SandboxSettings.from_env(environ=environ)


def test_cli_runs_several_workers_on_one_file(tmp_path):
    port = free_port()
    db = tmp_path / "cli.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DEMOBANK_SANDBOX_DB", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "demobank.sandbox",
            "--port",
            str(port),
            "--db",
            str(db),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(base + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "sandbox exited"
            assert time.monotonic() < deadline, "the CLI sandbox did not answer /health within 20 s"
            time.sleep(0.1)

        def send(i: int) -> int:
            return requests.post(
                base + MESSAGES_PATH,
                data={"To": "+15551230001", "From": "+15557650002", "Body": f"#{i}"},
                auth=TWILIO_AUTH,
                timeout=10,
            ).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(send, range(40)))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    assert codes == [201] * 40
    assert SandboxStore(Path(db)).count_messages("sms") == 40


def test_store_from_env_reads_the_sandbox_db_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("DEMOBANK_SANDBOX_DB", str(tmp_path / "from-env.db"))
    assert SandboxStore.from_env().path == tmp_path / "from-env.db"


def _write_at_once(stores: list[SandboxStore], writers: int) -> list[str]:
    barrier = threading.Barrier(writers)
    errors: list[str] = []

    def write(i: int) -> None:
        barrier.wait()
        try:
            stores[i % len(stores)].record_montecarlo(endpoint="/graphql", operation="ping", payload={"i": i})
        except Exception as exc:
            errors.append(f"writer {i}: {exc!r}")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_stores_opening_a_new_file_at_once_all_write(tmp_path):
    """Servers starting together on a new file race on the switch to WAL; none may answer "database is locked"."""
    for attempt in range(60):
        path = tmp_path / str(attempt) / "sandbox.db"
        errors = _write_at_once([SandboxStore(path) for _ in range(4)], writers=8)
        assert errors == [], f"attempt {attempt}"
        assert SandboxStore(path).count_messages("montecarlo") == 8
