"""`make run` end to end: the UI and REST API answer, the login works, the plugin is there and authenticated,
the suite's DAGs are active, the sandbox is mounted, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.e2e.conftest import LivePlatform

pytestmark = pytest.mark.e2e


def test_ui_and_health(live_platform: LivePlatform) -> None:
    assert requests.get(f"{live_platform.api_url}/", timeout=30).status_code == 200
    health = requests.get(f"{live_platform.api_url}/api/v2/monitor/health", timeout=30).json()
    assert {name: part["status"] for name, part in health.items()} == {
        "metadatabase": "healthy", "scheduler": "healthy", "triggerer": "healthy", "dag_processor": "healthy",
    }
    print(f"make run: healthy after {live_platform.startup_seconds:.0f} s")


def test_documented_logins_and_wrong_password(live_platform: LivePlatform) -> None:
    for name in ("admin", "operator", "viewer"):
        assert live_platform.token(name, name)
        wrong = requests.post(f"{live_platform.api_url}/auth/token",
                              json={"username": name, "password": "not-the-password"}, timeout=30)
        assert wrong.status_code == 401
    assert "logins: admin / admin (admin), operator / operator (op), viewer / viewer (viewer)" in live_platform.output()


def test_plugin_nav_entry(live_platform: LivePlatform) -> None:
    headers = {"Authorization": f"Bearer {live_platform.token()}"}
    plugins = requests.get(f"{live_platform.api_url}/api/v2/plugins", headers=headers, timeout=30).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "demobank")
    nav = {v["name"]: v for v in ours["external_views"] if v["destination"] == "nav"}
    assert nav["Sandbox outbox"]["href"] == "/demobank/sandbox-outbox"
    assert nav["Event targets"]["href"] == "/demobank/targets" and nav["Event targets"]["category"] == "Demo Bank"
    assert {a["url_prefix"] for a in ours["fastapi_apps"]} == {"/demobank", "/sandbox"}


@pytest.mark.parametrize("path", ["/demobank/", "/demobank/sandbox-outbox", "/demobank/api/v1/sandbox/messages",
                                  "/demobank/api/v1/whoami", "/demobank/docs", "/demobank/openapi.json",
                                  "/demobank/targets", "/demobank/api/v1/targets", "/demobank/api/v1/event-types"])
def test_plugin_routes_require_authentication(live_platform: LivePlatform, path: str) -> None:
    assert requests.get(f"{live_platform.api_url}{path}", timeout=30).status_code == 401
    bad = requests.get(f"{live_platform.api_url}{path}", headers={"Authorization": "Bearer forged"}, timeout=30)
    assert bad.status_code in (401, 403)


def test_plugin_routes_answer_with_a_token_or_the_ui_cookie(live_platform: LivePlatform) -> None:
    token = live_platform.token()
    by_bearer = requests.get(f"{live_platform.api_url}/demobank/sandbox-outbox",
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert by_bearer.status_code == 200
    assert "Sandbox outbox" in by_bearer.text
    by_cookie = requests.get(f"{live_platform.api_url}/demobank/api/v1/whoami", cookies={"_token": token}, timeout=30)
    assert by_cookie.status_code == 200
    assert by_cookie.json()["user"] == "admin"
    assert by_cookie.json()["permissions"] == {"read": True, "publish": True, "manage": True}
    unknown = requests.get(f"{live_platform.api_url}/demobank/docs", cookies={"_token": token}, timeout=30)
    assert unknown.status_code == 404


def test_sandbox_is_mounted_and_its_outbox_page_shows_what_it_received(live_platform: LivePlatform) -> None:
    from twilio.rest import Client

    client = Client("AC" + "0" * 32, "sandbox-twilio-auth-token")
    client.api.base_url = f"{live_platform.api_url}/sandbox"
    message = client.messages.create(to="+15550100777", from_="+15005550006", body="make run e2e check")
    headers = {"Authorization": f"Bearer {live_platform.token()}"}
    listed = requests.get(f"{live_platform.api_url}/demobank/api/v1/sandbox/messages?channel=sms",
                          headers=headers, timeout=30).json()
    assert [m for m in listed if m["sid"] == message.sid]
    page = requests.get(f"{live_platform.api_url}/demobank/sandbox-outbox?channel=sms", headers=headers, timeout=30)
    assert message.sid in page.text


def test_suite_dags_are_active_from_the_start(live_platform: LivePlatform, project_dir) -> None:
    expected = set()
    for path in (project_dir / "dags").rglob("*.py"):
        expected |= set(re.findall(r'dag_id="([a-z0-9_]+)"', path.read_text()))
    assert expected, "no dag_id found in dags/"
    headers = {"Authorization": f"Bearer {live_platform.token()}"}
    deadline = time.monotonic() + 120
    dags: dict[str, bool] = {}
    while time.monotonic() < deadline:
        body = requests.get(f"{live_platform.api_url}/api/v2/dags?limit=100", headers=headers, timeout=30).json()
        dags = {d["dag_id"]: d["is_paused"] for d in body["dags"]}
        if expected <= set(dags):
            break
        time.sleep(2)
    assert {dag_id: dags.get(dag_id) for dag_id in expected} == dict.fromkeys(expected, False)
    errors = requests.get(f"{live_platform.api_url}/api/v2/importErrors", headers=headers, timeout=30).json()
    assert errors["total_entries"] == 0, errors


@pytest.mark.last
def test_ctrl_c_stops_everything(live_platform: LivePlatform) -> None:
    """Ctrl-C (SIGINT to the foreground process group) stops every process `make run` started: runs last."""
    live_platform.remember_processes()
    assert len(live_platform.seen_pids) >= 5, live_platform.seen_pids
    # make itself dies of the SIGINT (as on a terminal); the launcher it started does the stopping.
    assert live_platform.interrupt() in (0, -2, 2, 130)
    deadline = time.monotonic() + 60
    while live_platform.processes_left() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert live_platform.processes_left() == []
    assert "stopped: no process left" in live_platform.output()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{live_platform.api_url}/api/v2/monitor/health", timeout=5)
