"""MonteCarloHook over the real pycarlo client against the sandbox's gateway; the "View in Monte Carlo" URL and link."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import requests
from fastapi import FastAPI

from demobank.connectors.health import check_connection
from demobank.connectors.montecarlo import (
    DEFAULT_UI_URL,
    GATEWAY_SCOPE,
    MonteCarloHook,
    MonteCarloLink,
    monte_carlo_url,
)
from demobank.sandbox import SandboxSettings, create_app
from demobank.sandbox.settings import DEFAULT_MCD_ID, DEFAULT_MCD_TOKEN
from demobank.sandbox.store import SandboxStore
from demobank.sandbox.testing import running_sandbox, serving
from tests.conftest import free_port


@pytest.fixture(scope="module")
def sandbox_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mc-sandbox")


@pytest.fixture(scope="module")
def sandbox_url(sandbox_dir):
    with running_sandbox(sandbox_dir) as base_url:
        yield base_url


@pytest.fixture
def store(sandbox_dir, sandbox_url) -> SandboxStore:
    store = SandboxStore(sandbox_dir / "sandbox.db")
    store.clear()
    store.reset_faults()
    return store


def _set_conn(monkeypatch, conn_id: str = "montecarlo_default", **fields) -> None:
    fields.setdefault("conn_type", "montecarlo")
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def _sandbox_conn(monkeypatch, url: str, **overrides) -> None:
    _set_conn(monkeypatch, **{"host": url, "login": DEFAULT_MCD_ID, "password": DEFAULT_MCD_TOKEN, **overrides})


def test_scope_is_airflow_mcds_gateway_scope() -> None:
    from airflow_mcd.hooks.constants import MCD_GATEWAY_SCOPE

    assert GATEWAY_SCOPE == MCD_GATEWAY_SCOPE


def test_ping_through_pycarlo_is_recorded(monkeypatch, sandbox_url, store) -> None:
    _sandbox_conn(monkeypatch, sandbox_url)
    hook = MonteCarloHook()

    answer = hook.post_callback("ping", {})

    assert answer["success"] is True
    assert hook.callbacks_url == f"{sandbox_url}/airflow/callbacks"
    rows = store.list_messages("montecarlo")
    assert [(r["endpoint"], r["operation"]) for r in rows] == [("/airflow/callbacks", "ping")]


def test_the_connection_check_uses_the_montecarlo_hook(monkeypatch, sandbox_url, store) -> None:
    _sandbox_conn(monkeypatch, sandbox_url)
    result = check_connection("montecarlo_default")
    assert result.ok, result.message
    assert "/airflow/callbacks" in result.message

    _sandbox_conn(monkeypatch, sandbox_url, password="wrong-token")
    result = check_connection("montecarlo_default")
    assert not result.ok
    assert "refused the credentials" in result.message and "401" in result.message


def test_connection_without_key_says_what_to_set(monkeypatch, sandbox_url) -> None:
    _set_conn(monkeypatch, host=sandbox_url)
    ok, message = MonteCarloHook().test_connection()
    assert not ok
    assert "login = key id" in message


def test_airflow_mcd_style_extras_are_accepted(monkeypatch, sandbox_url, store) -> None:
    _set_conn(monkeypatch, host=sandbox_url, extra={"mcd_id": DEFAULT_MCD_ID, "mcd_token": DEFAULT_MCD_TOKEN})
    assert MonteCarloHook().test_connection()[0]


def test_behind_the_sandbox_mount_like_in_airflow(tmp_path, monkeypatch) -> None:
    """make run: the sandbox is mounted at /sandbox of the API server and nothing at /airflow; the hook joins the
    gateway path relative to the host, so the report reaches /sandbox/airflow/callbacks."""
    settings = SandboxSettings(db_path=tmp_path / "sandbox.db")
    parent = FastAPI()
    parent.mount("/sandbox", create_app(settings))
    with serving(parent) as base_url:
        _sandbox_conn(monkeypatch, base_url + "/sandbox")
        assert MonteCarloHook().post_callback("ping", {})["success"] is True
    assert SandboxStore(tmp_path / "sandbox.db").count_messages("montecarlo") == 1


def test_connection_host_wins_over_mcd_api_endpoint(monkeypatch, sandbox_url, store) -> None:
    import pycarlo.core.session as pycarlo_session

    # pycarlo reads MCD_API_ENDPOINT at import and lets it override an explicit endpoint.
    monkeypatch.setattr(pycarlo_session, "MCD_API_ENDPOINT", f"http://127.0.0.1:{free_port()}/graphql")
    monkeypatch.setenv("MCD_API_ENDPOINT", f"http://127.0.0.1:{free_port()}/graphql")
    _sandbox_conn(monkeypatch, sandbox_url)
    assert MonteCarloHook().post_callback("ping", {})["success"] is True


def test_empty_host_means_monte_carlos_gateway(monkeypatch) -> None:
    monkeypatch.delenv("MCD_API_ENDPOINT", raising=False)
    _set_conn(monkeypatch, login="id", password="token")
    assert MonteCarloHook().callbacks_url == "https://integrations.getmontecarlo.com/airflow/callbacks"


def test_failures_are_classified(monkeypatch, sandbox_url, store) -> None:
    _sandbox_conn(monkeypatch, sandbox_url)
    hook = MonteCarloHook(timeout=5)

    requests.put(f"{sandbox_url}/faults", json={"error_rate": 1.0, "error_statuses": [503],
                                                "channels": ["montecarlo"]}, timeout=5).raise_for_status()
    with pytest.raises(requests.HTTPError) as unavailable:
        hook.post_callback("ping", {})
    failure = hook.describe_failure(unavailable.value)
    assert (failure.transient, failure.http_status) == (True, 503)
    store.reset_faults()

    with pytest.raises(requests.HTTPError) as bad_payload:
        hook.post_callback("upload_airflow_dag_result", {"dag_id": "d"})
    failure = hook.describe_failure(bad_payload.value)
    assert (failure.transient, failure.http_status) == (False, 400)
    assert "missing" in failure.message

    _sandbox_conn(monkeypatch, f"http://127.0.0.1:{free_port()}")
    closed = MonteCarloHook(timeout=2)
    with pytest.raises(requests.ConnectionError) as unreachable:
        closed.post_callback("ping", {})
    failure = closed.describe_failure(unreachable.value)
    assert failure.transient and failure.http_status is None
    assert "could not reach Monte Carlo" in failure.message
    assert store.count_messages("montecarlo") == 0


def test_no_retries_inside_a_call(monkeypatch, sandbox_url, store) -> None:
    """pycarlo would retry a 5xx with backoff for minutes; the hook makes exactly one request."""
    import pycarlo.core.client as pycarlo_client

    calls = []
    real_request = pycarlo_client.requests.request

    def counting(*args, **kwargs):
        calls.append(kwargs.get("timeout"))
        return real_request(*args, **kwargs)

    monkeypatch.setattr(pycarlo_client.requests, "request", counting)
    requests.put(f"{sandbox_url}/faults", json={"error_rate": 1.0, "error_statuses": [500]}, timeout=5)
    _sandbox_conn(monkeypatch, sandbox_url)
    with pytest.raises(requests.HTTPError):
        MonteCarloHook(timeout=3).post_callback("ping", {})
    assert calls == [3]


# -- View in Monte Carlo -------------------------------------------------------------------------------------------


def test_monte_carlo_url_defaults_without_a_connection(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_MC", raising=False)
    assert monte_carlo_url("data_factory_transactions", montecarlo_conn_id="no_such_mc") == (
        f"{DEFAULT_UI_URL}/jobs?search=data_factory_transactions")


def test_monte_carlo_url_from_the_connection(monkeypatch) -> None:
    _set_conn(monkeypatch, login="i", password="t",
              extra={"ui_url": "https://eu.getmontecarlo.com/", "ui_path": "/airflow/dags/{dag_id}"})
    assert monte_carlo_url("data factory/x") == "https://eu.getmontecarlo.com/airflow/dags/data%20factory%2Fx"
    assert monte_carlo_url("df", "manual__2026-01-01T00:00:00+00:00") == (
        "https://eu.getmontecarlo.com/airflow/dags/df?run_id=manual__2026-01-01T00%3A00%3A00%2B00%3A00")


def test_operator_link_points_at_the_run(monkeypatch) -> None:
    _set_conn(monkeypatch, login="i", password="t", extra={"ui_url": "https://mc.example"})
    operator = SimpleNamespace(dag_id="df")
    link = MonteCarloLink().get_link(operator, ti_key=SimpleNamespace(dag_id="df", run_id="r1", task_id="load"))
    assert link == "https://mc.example/jobs?search=df&run_id=r1"
    assert MonteCarloLink.name == "View in Monte Carlo"


def test_provider_registers_the_connection_type_and_the_link() -> None:
    from demobank.provider import get_provider_info

    info = get_provider_info()
    assert "demobank.connectors.montecarlo.MonteCarloLink" in info["extra-links"]
    (mc,) = [c for c in info["connection-types"] if c["connection-type"] == "montecarlo"]
    assert mc["hook-class-name"] == "demobank.connectors.montecarlo.MonteCarloHook"
    assert MonteCarloHook.conn_type == "montecarlo"


def test_add_monte_carlo_link_survives_serialization() -> None:
    from airflow.sdk import DAG, task
    from airflow.serialization.serialized_objects import DagSerialization

    from demobank.connectors.montecarlo import add_monte_carlo_link

    with DAG("df_link_test", schedule=None) as dag:
        @task
        def load() -> int:
            return 1

        loaded = load()
        add_monte_carlo_link(loaded, loaded)  # idempotent

    assert [type(link).__name__ for link in dag.task_dict["load"].operator_extra_links] == ["MonteCarloLink"]
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert [link.name for link in restored.task_dict["load"].operator_extra_links] == ["View in Monte Carlo"]
