"""The health API's routes per role of the simple auth manager (the one of ``make run``), and what they answer to
bad input: every refusal says why (403 naming the permission, 404 naming the target, 422 naming the value)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.events.test_dispatcher import deliveries, publish_events
from tests.events.test_target_health import health_client, make_dead_letters

API = "/demobank/api/v1"
MANAGE_ROUTES = [("post", "/targets/{id}/resume"), ("post", "/targets/{id}/dead-letters/requeue"),
                 ("post", "/targets/{id}/dead-letters/dismiss"), ("post", "/run-reports/requeue"),
                 ("post", "/run-reports/dismiss")]


@pytest.mark.parametrize("role", ["viewer", "user"])
def test_readers_see_the_health_and_change_nothing(engine: Engine, role: str) -> None:
    target_id, _ = make_dead_letters(engine, 2)
    with health_client(engine, role) as client:
        answer = client.get(f"{API}/health")
        assert answer.status_code == 200
        assert answer.json()["summary"]["new_dead_letters"] == 2 and answer.json()["ok"] is False
        assert answer.json()["new_means"] == "not requeued nor dismissed yet"
        for method, path in MANAGE_ROUTES:
            refused = getattr(client, method)(API + path.format(id=target_id), json={})
            assert refused.status_code == 403, path
            assert f"user 'the-{role}' may not manage event targets and requeue dead letters" in refused.json()[
                "detail"]
            assert "PUT on Connections" in refused.json()["detail"]
    assert {row.status for row in deliveries(engine, target_id).values()} == {"dead"}


def test_an_operator_requeues_and_dismisses_and_bad_input_is_explained(engine: Engine) -> None:
    target_id, ids = make_dead_letters(engine, 3)
    pending = publish_events(engine, 1)[0]
    with health_client(engine, "op") as client:
        url = f"{API}/targets/{target_id}/dead-letters"
        assert client.post(f"{API}/targets/999/dead-letters/requeue").status_code == 404
        assert "no event target has id 999" in client.post(f"{API}/targets/999/resume").json()["detail"]
        wrong = client.post(f"{url}/requeue", json={"event_ids": [ids[0], pending]})
        assert wrong.status_code == 422 and f"{pending} (pending)" in wrong.json()["detail"]
        naive = client.post(f"{url}/requeue", json={"since": "2026-11-20T16:00:00"})
        assert naive.status_code == 422 and "has no UTC offset" in naive.json()["detail"]
        assert client.post(f"{url}/requeue", json={"event_ids": []}).status_code == 422
        assert client.post(f"{url}/requeue", json={"ids": [ids[0]]}).status_code == 422  # unknown field
        assert client.post(f"{API}/run-reports/requeue", json={"since": "2026-11-20T16:00:00"}).status_code == 422
        assert {row.status for row in deliveries(engine, target_id).values()} == {"dead", "pending"}  # unchanged

        dismissed = client.post(f"{url}/dismiss", json={"event_ids": [ids[2]]})
        assert dismissed.status_code == 200 and dismissed.json()["count"] == 1
        assert client.get(f"{API}/health").json()["summary"]["new_dead_letters"] == 2
        requeued = client.post(f"{url}/requeue", json={"event_ids": ids[:2]})
        assert requeued.status_code == 200 and requeued.json()["count"] == 2
        assert requeued.json()["dispatch"] == "next sweep (within a minute)"
        assert "2 dead letter(s) of event target 'partner-bus' requeued" in requeued.json()["message"]
        health = client.get(f"{API}/health").json()
        assert health["ok"] is True and health["targets"][0]["dead_letters"] == 1  # the dismissed one stays dead
        everything = client.post(f"{url}/requeue")  # no body: every dead letter
        assert everything.status_code == 200 and everything.json()["count"] == 1
    assert {row.status for row in deliveries(engine, target_id).values()} == {"pending"}


def test_the_plugin_app_mounts_the_health_routes() -> None:
    from demobank.ui.app import create_app

    paths = {route.path for route in create_app().routes}
    assert {"/api/v1/health", "/api/v1/targets/{target_id}/resume", "/api/v1/run-reports/requeue",
            "/api/v1/targets/{target_id}/dead-letters/requeue"} <= paths
