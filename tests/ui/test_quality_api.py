"""The Data Quality tab's API and page routes (``demobank.ui.quality_api``) on a migrated SQLite file, with records
written by the pipeline's own writer (``QualityRecorder``), and their authentication on the real plugin app."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from demobank.db.engine import get_engine
from tests.ui.conftest import HTML_ERROR, MISSING_SOURCE_ERROR, QUALITY_DAG, QualityRuns, known_dag, sign_in

RUNS = f"/demobank/api/v1/data-quality/{QUALITY_DAG}/runs"
MC = "https://mc.example.test"


def runs_of(client: TestClient, dag_id: str = QUALITY_DAG, **params: Any) -> dict[str, Any]:
    response = client.get(f"/demobank/api/v1/data-quality/{dag_id}/runs", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def config_of(page: str) -> dict[str, Any]:
    """The JSON the page's script reads (``<script type="application/json" id="dq-config">``)."""
    found = re.search(r'<script type="application/json" id="dq-config">(.*?)</script>', page, re.S)
    assert found, page
    return json.loads(found.group(1))


# -- the history and one run ---------------------------------------------------------------------------------------


def test_history_has_every_run_newest_first_with_its_counts_checks_and_links(
        quality_client: TestClient, quality_runs: QualityRuns, montecarlo_connection: str) -> None:
    body = runs_of(quality_client)

    assert (body["dag_id"], body["kind"], body["limit"]) == (QUALITY_DAG, "data_factory", 50)
    assert body["monte_carlo"] == {"url": f"{MC}/jobs?search={QUALITY_DAG}", "connection_id": "montecarlo_default",
                                   "configured": True, "note": None}
    runs = body["runs"]
    assert [run["run_id"] for run in runs] == [quality_runs.failed_source, quality_runs.failed_load,
                                               quality_runs.success]
    source, load, success = runs

    assert (success["status"], success["business_date"], success["failed_task"], success["error"]) == (
        "success", "2026-01-08", None, None)
    assert (success["rows_in"], success["rows_loaded"], success["rows_quarantined"], success["events_published"]) == (
        2_000, 1_900, 100, 1_900)
    assert (success["bad_share"], success["max_bad_share"]) == (pytest.approx(0.05), pytest.approx(0.10))
    assert success["checks_summary"] == {"passed": 3, "failed": 0, "warning": 2}
    assert success["started_at"].endswith("Z") and success["finished_at"] >= success["started_at"]
    assert success["duration_seconds"] >= 0
    assert [t["table"] for t in success["tables"]] == ["core_banking.transactions", "warehouse.transactions",
                                                       "warehouse.quarantine_transactions", "demobank.outbox_events"]
    assert success["tables"][1]["detail"] == {"inserted": 1_900, "changed": 0, "unchanged": 0, "committed": True}
    assert [c["name"] for c in success["checks"]] == ["source_available", "required_fields", "amount_positive",
                                                      "export_complete", "bad_share_threshold"]
    assert success["monte_carlo_url"] == (
        f"{MC}/jobs?search={QUALITY_DAG}&run_id=manual__2026-01-08T10%3A00%3A00%2B00%3A00")

    assert (load["status"], load["failed_task"], load["rows_loaded"], load["rows_quarantined"]) == (
        "failed", "validate_and_load", 0, 1_000)
    assert load["error"] == HTML_ERROR  # the API gives the text as it is; the page escapes it
    assert load["bad_share"] == pytest.approx(0.5) and load["events_published"] is None
    assert load["checks_summary"] == {"passed": 2, "failed": 1, "warning": 2}
    gate = next(c for c in load["checks"] if c["name"] == "bad_share_threshold")
    assert (gate["status"], gate["failed_rows"], gate["message"]) == (
        "failed", 1_000, "50.00% bad rows (1,000 of 2,000); threshold 10.00%")

    assert (source["status"], source["failed_task"], source["error"], source["business_date"]) == (
        "failed", "check_source", MISSING_SOURCE_ERROR, "2025-12-31")
    assert (source["rows_in"], source["rows_loaded"], source["rows_quarantined"], source["tables"]) == (
        None, None, None, [])
    assert source["checks_summary"] == {"passed": 0, "failed": 1, "warning": 0}


def test_a_run_in_progress_is_running_without_an_end(
        quality_client: TestClient, record_quality_run: Callable[..., None]) -> None:
    record_quality_run(QUALITY_DAG, "scheduled__2026-01-10T02:00:00+00:00", "2026-01-10", finish=False)

    [run] = runs_of(quality_client)["runs"]
    assert (run["status"], run["finished_at"], run["duration_seconds"], run["checks_summary"]) == (
        "running", None, None, {"passed": 0, "failed": 0, "warning": 0})


def test_the_limit_keeps_the_newest_runs(quality_client: TestClient, quality_runs: QualityRuns) -> None:
    body = runs_of(quality_client, limit=2)
    assert body["limit"] == 2
    assert [run["run_id"] for run in body["runs"]] == [quality_runs.failed_source, quality_runs.failed_load]


@pytest.mark.parametrize("limit", [0, 1001, "many"])
def test_a_bad_limit_is_refused(quality_client: TestClient, limit: Any) -> None:
    response = quality_client.get(RUNS, params={"limit": limit})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


def test_one_run_is_the_same_as_in_the_history(quality_client: TestClient, quality_runs: QualityRuns,
                                               montecarlo_connection: str) -> None:
    in_history = {run["run_id"]: run for run in runs_of(quality_client)["runs"]}
    for run_id in (quality_runs.success, quality_runs.failed_load, quality_runs.failed_source):
        response = quality_client.get(f"{RUNS}/{run_id}")
        assert response.status_code == 200, response.text
        assert response.json() == in_history[run_id]


def test_a_data_factory_dag_without_runs_has_an_empty_history(quality_client: TestClient,
                                                              quality_runs: QualityRuns) -> None:
    body = runs_of(quality_client, "data_factory_customer_sync")
    assert (body["kind"], body["runs"]) == ("data_factory", [])


# -- what has no record: 404s that say why --------------------------------------------------------------------------


def test_an_unknown_run_is_404(quality_client: TestClient, quality_runs: QualityRuns) -> None:
    response = quality_client.get(f"{RUNS}/manual__2030-01-01T00:00:00+00:00")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "DAG data_factory_transactions has no run manual__2030-01-01T00:00:00+00:00 in the data quality record (a run "
        "has one from the moment its first task starts): check the run id")


def test_a_run_of_another_dag_is_404(quality_client: TestClient, quality_runs: QualityRuns,
                                     record_quality_run: Callable[..., None]) -> None:
    record_quality_run("data_factory_customer_sync", "manual__sync", "2026-01-08", rows_in=10)
    response = quality_client.get(f"/demobank/api/v1/data-quality/data_factory_customer_sync/runs/"
                                  f"{quality_runs.success}")
    assert response.status_code == 404
    assert "has no run manual__2026-01-08T10:00:00+00:00" in response.json()["detail"]


@pytest.mark.parametrize("suffix", ["", "/some_run"])
def test_a_dag_that_is_not_a_data_factory_pipeline_is_404_saying_so(quality_client: TestClient,
                                                                    quality_runs: QualityRuns, suffix: str) -> None:
    response = quality_client.get(f"/demobank/api/v1/data-quality/events_dispatch/runs{suffix}")
    assert response.status_code == 404
    body = response.json()
    assert body["kind"] == "not_data_factory"
    assert body["detail"].startswith("DAG events_dispatch is not a Data Factory pipeline (it has no 'data_factory' "
                                     "tag), so it has no data quality record")


@pytest.mark.parametrize("suffix", ["", "/some_run"])
def test_an_unknown_dag_is_404(quality_client: TestClient, quality_runs: QualityRuns, suffix: str) -> None:
    response = quality_client.get(f"/demobank/api/v1/data-quality/no_such_dag/runs{suffix}")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "there is no DAG no_such_dag in Airflow and no data quality record of it: check the DAG id",
        "dag_id": "no_such_dag", "kind": "unknown"}


def test_a_dag_airflow_no_longer_has_keeps_its_history(quality_client: TestClient,
                                                       record_quality_run: Callable[..., None]) -> None:
    record_quality_run("data_factory_retired", "manual__old", "2025-06-01", rows_in=10, bad=1)
    body = runs_of(quality_client, "data_factory_retired")
    assert (body["kind"], [run["run_id"] for run in body["runs"]]) == ("data_factory", ["manual__old"])


def test_when_airflow_cannot_say_the_record_still_answers(engine: Engine, quality_runs: QualityRuns,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from fastapi import FastAPI

    from demobank.ui.quality_api import create_router

    def broken_lookup(dag_id: str) -> Any:
        raise RuntimeError("metadata database unreachable")

    app = FastAPI()
    app.include_router(create_router(lambda: engine, broken_lookup), prefix="/demobank")
    sign_in(app, "viewer")
    with TestClient(app) as client:
        assert len(runs_of(client)["runs"]) == 3  # the record says it is a Data Factory DAG
        response = client.get("/demobank/api/v1/data-quality/events_dispatch/runs")
    assert response.status_code == 404
    assert response.json()["detail"] == ("there is no data quality record for DAG events_dispatch (Airflow's DAG list "
                                         "could not be read to say whether it is a Data Factory pipeline)")
    assert "could not look DAG events_dispatch up" in caplog.text


def test_an_unreadable_suite_database_is_503(tmp_path: Path) -> None:
    from fastapi import FastAPI

    from demobank.ui.quality_api import create_router

    unmigrated = get_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    app = FastAPI()
    app.include_router(create_router(lambda: unmigrated, known_dag), prefix="/demobank")
    sign_in(app, "viewer")
    with TestClient(app) as client:
        for path in (RUNS, f"{RUNS}/some_run"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.json()["detail"].startswith("the suite's database could not be read (OperationalError)")
        page = client.get(f"/demobank/data-quality/{QUALITY_DAG}")
    assert page.status_code == 503
    assert "the suite&#39;s database could not be read" in page.text


# -- the page as served (the browser test drives it) ------------------------------------------------------------------


def test_the_page_of_a_data_factory_dag_loads_its_runs_from_the_api(
        quality_client: TestClient, quality_runs: QualityRuns, montecarlo_connection: str) -> None:
    response = quality_client.get(f"/demobank/data-quality/{QUALITY_DAG}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<title>Data Quality · data_factory_transactions</title>" in page
    assert config_of(page) == {"dag_id": QUALITY_DAG, "api": f"../api/v1/data-quality/{QUALITY_DAG}/runs",
                               "limit": 50}
    assert f'href="{MC}/jobs?search={QUALITY_DAG}" target="_blank"' in page
    assert 'data-testid="monte-carlo-note"' not in page
    assert 'data-testid="no-record"' not in page


def test_without_the_monte_carlo_connection_the_link_goes_to_monte_carlo_and_the_page_says_why(
        quality_client: TestClient, quality_runs: QualityRuns, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MONTECARLO_DEFAULT", raising=False)
    page = quality_client.get(f"/demobank/data-quality/{QUALITY_DAG}").text
    assert f'href="https://getmontecarlo.com/jobs?search={QUALITY_DAG}"' in page
    assert ("connection montecarlo_default is not set up, so the links open Monte Carlo&#39;s default address "
            "(https://getmontecarlo.com)") in page
    body = runs_of(quality_client)
    assert body["monte_carlo"]["configured"] is False
    assert body["runs"][0]["monte_carlo_url"].startswith(f"https://getmontecarlo.com/jobs?search={QUALITY_DAG}&run_id=")


def test_the_page_of_another_dag_says_it_is_not_a_data_factory_pipeline(quality_client: TestClient) -> None:
    response = quality_client.get("/demobank/data-quality/events_dispatch")
    assert response.status_code == 200  # a tab Airflow shows on every DAG: an answer, not an error
    assert 'data-kind="not_data_factory"' in response.text
    assert ("DAG events_dispatch is not a Data Factory pipeline (it has no &#39;data_factory&#39; tag), so it has no "
            "data quality record") in response.text
    assert "dq-config" not in response.text and "View in Monte Carlo" not in response.text


def test_the_page_of_an_unknown_dag_is_404_and_escapes_what_it_was_given(quality_client: TestClient) -> None:
    response = quality_client.get("/demobank/data-quality/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert response.status_code == 404
    assert 'data-kind="unknown"' in response.text
    assert "<img" not in response.text
    assert "there is no DAG &lt;img src=x onerror=alert(1)&gt; in Airflow" in response.text


# -- the real plugin app: authentication, and the tab Airflow shows -------------------------------------------------


@pytest.fixture
def real_app_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The plugin's app as Airflow mounts it, with Airflow's auth manager initialized (to judge tokens)."""
    from airflow.api_fastapi import app as airflow_app

    from demobank.ui.app import create_app

    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
    airflow_app.create_auth_manager()
    with TestClient(create_app()) as client:
        yield client


ROUTES = [f"/data-quality/{QUALITY_DAG}", f"/api/v1/data-quality/{QUALITY_DAG}/runs",
          f"/api/v1/data-quality/{QUALITY_DAG}/runs/some_run", "/data-quality/no_such_dag"]


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_requires_authentication_on_the_real_app(real_app_client: TestClient, path: str) -> None:
    anonymous = real_app_client.get(path)
    assert anonymous.status_code == 401, anonymous.text  # 401, not 404: nothing is revealed to a stranger
    assert anonymous.json() == {"detail": "Not authenticated"}
    forged = real_app_client.get(path, headers={"Authorization": "Bearer not.a.token"})
    assert forged.status_code == 403
    assert real_app_client.get(path, cookies={"_token": "not.a.token"}).status_code == 403


def test_the_real_app_checks_dag_access_on_every_data_quality_route() -> None:
    """Beyond signing in, each route asks for the suite's read permission and whether the user may read the DAG's
    runs (the refusals themselves: tests/ui/test_route_permissions.py)."""
    from demobank.ui.app import create_app
    from demobank.ui.permissions import checks_of

    routes = {route.path: route for route in create_app().routes
              if getattr(route, "path", "").startswith(("/data-quality", "/api/v1/data-quality"))}
    assert set(routes) == {"/data-quality/{dag_id}", "/api/v1/data-quality/{dag_id}/runs",
                           "/api/v1/data-quality/{dag_id}/runs/{run_id}"}
    for route in routes.values():
        assert checks_of(route) == ["read", "dag GET"], route.path


def test_the_plugin_adds_the_tab_to_the_dag_page() -> None:
    from demobank.ui.plugin import DemoBankPlugin

    tabs = [view for view in DemoBankPlugin.external_views if view["destination"] == "dag"]
    assert tabs == [{"name": "Data Quality", "href": "/demobank/data-quality/{DAG_ID}", "destination": "dag",
                     "url_route": "demobank-data-quality"}]


def test_the_default_dag_lookup_reads_airflows_metadata_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """``airflow_dag_info`` asks Airflow's own session for the DAG and its tags (here a stand-in session)."""
    from contextlib import contextmanager
    from types import SimpleNamespace

    from demobank.ui import quality_api

    seen: list[str] = []

    class Session:
        def scalar(self, statement: Any) -> Any:
            seen.append(str(statement))
            params = statement.compile().params
            if "data_factory_transactions" in params.values():
                return SimpleNamespace(tags=[SimpleNamespace(name="data_factory"), SimpleNamespace(name="pii")])
            return None

    @contextmanager
    def create_session() -> Iterator[Session]:
        yield Session()

    monkeypatch.setattr("airflow.utils.session.create_session", create_session)
    assert quality_api.airflow_dag_info("data_factory_transactions") == quality_api.DagInfo(
        exists=True, tags=frozenset({"data_factory", "pii"}))
    assert quality_api.airflow_dag_info("nope") == quality_api.DagInfo(exists=False)
    assert all("FROM dag" in statement for statement in seen)
