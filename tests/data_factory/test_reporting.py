"""Run reporting to Monte Carlo: the payloads, the real pycarlo client over HTTP against the sandbox's gateway, and
the outbox in the suite's database (Monte Carlo down, back, hanging, refusing the credentials).

Callback contexts are built the way Airflow 3.3's DAG processor builds them (``_execute_dag_callbacks``: the
failed or last successful task instance's template context, ``reason``, ``dag_run``); task states come through a
stand-in for the DAG processor's supervisor channel, as ``RuntimeTaskInstance.get_task_states`` asks for them.
``tests/data_factory/test_reporting_dag_test.py`` runs a real DAG with ``dag.test()``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pendulum
import pytest
import requests

from demobank.data_factory import report_outbox
from demobank.data_factory.report_outbox import MonteCarloUnavailableError, list_reports, requeue_rejected
from demobank.data_factory.reporting import (
    MonteCarloRunReporter,
    _fold_states,
    build_dag_report,
    lineage_entry,
    sweep_pending_reports,
)
from demobank.sandbox.settings import DEFAULT_MCD_ID, DEFAULT_MCD_TOKEN
from demobank.sandbox.store import SandboxStore
from demobank.sandbox.testing import running_sandbox
from tests.conftest import free_port

DAG_ID = "df_reporting_test"
CORE_TX = ("core.transactions", "postgres://core:5432/bank/public/transactions")
CORE_ACCOUNTS = ("core.accounts", "postgres://core:5432/bank/public/accounts")
QUARANTINE = ("dw.quarantine", "postgres://dw:5432/dw/public/quarantine")
DW_TX = ("dw.transactions", "postgres://dw:5432/dw/public/transactions")
DW_BALANCES = ("dw.daily_balances", "postgres://dw:5432/dw/public/daily_balances")
INLETS = {CORE_TX[1], CORE_ACCOUNTS[1]}
OUTLETS = {QUARANTINE[1], DW_TX[1], DW_BALANCES[1]}
DEPENDENCIES = {"extract": ["validate"], "validate": ["transform"], "transform": ["load"], "load": []}

#: The top-level keys of airflow-mcd 0.3.12's DAG report through the gateway (AirflowEventsClient.upload_dag_result).
AIRFLOW_MCD_DAG_KEYS = {
    "dag_id", "run_id", "success", "reason", "state", "execution_date", "start_date", "end_date", "env", "payload",
    "tags", "tasks", "task_dependencies", "triggered_dags", "dataset_schedule_uris", "dataset_outlet_uris",
    "dataset_trigger_events",
}
START = datetime(2026, 1, 2, 1, 0, tzinfo=UTC)


def _asset(spec: tuple[str, str]):
    from airflow.sdk import Asset

    return Asset(name=spec[0], uri=spec[1])


def make_dag():
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG(DAG_ID, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             tags=["data_factory", "test"]) as dag:
        extract = EmptyOperator(task_id="extract", inlets=[_asset(CORE_TX), _asset(CORE_ACCOUNTS)])
        validate = EmptyOperator(task_id="validate", outlets=[_asset(QUARANTINE)])
        transform = EmptyOperator(task_id="transform")
        load = EmptyOperator(task_id="load", outlets=[_asset(DW_TX), _asset(DW_BALANCES)])
        extract >> validate >> transform >> load
    return dag


def dag_processor_context(dag, *, run_id: str, state: str, reason: str, last_task_id: str,
                          start: datetime = START, seconds: float = 42.0) -> dict:
    """The context Airflow 3.3's DAG processor passes to a DAG-level callback (see ``_execute_dag_callbacks``)."""
    from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
    from airflow.sdk.api.datamodels._generated import TaskInstance as TIModel
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    dag_run = DagRun(dag_id=dag.dag_id, run_id=run_id, logical_date=start, data_interval_start=start,
                     data_interval_end=start, run_after=start, start_date=start,
                     end_date=start + timedelta(seconds=seconds), run_type="manual", state=state,
                     consumed_asset_events=[], partition_key=None)
    last_ti = TIModel(id=uuid.uuid4(), task_id=last_task_id, dag_id=dag.dag_id, run_id=run_id, try_number=1,
                      dag_version_id=uuid.uuid4(), hostname="worker-1")
    task = dag.get_task(last_task_id)
    runtime_ti = RuntimeTaskInstance.model_construct(
        **last_ti.model_dump(exclude_unset=True), task=task,
        _ti_context_from_server=TIRunContext.model_construct(dag_run=dag_run, max_tries=task.retries))
    context = runtime_ti.get_template_context()
    context["reason"] = reason
    return context


class FakeSupervisor:
    """Answers ``GetTaskStates`` like the DAG processor's manager does (from the API server)."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, str]] = {}
        self.asked: list = []

    def send(self, msg):
        from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult

        assert isinstance(msg, GetTaskStates), msg
        self.asked.append(msg)
        return TaskStatesResult(task_states={r: self.states.get(r, {}) for r in msg.run_ids or []})


@pytest.fixture
def supervisor(monkeypatch) -> FakeSupervisor:
    from airflow.sdk.execution_time import task_runner

    fake = FakeSupervisor()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
    return fake


def success_context(dag, supervisor: FakeSupervisor, run_id: str) -> dict:
    supervisor.states[run_id] = dict.fromkeys(DEPENDENCIES, "success")
    return dag_processor_context(dag, run_id=run_id, state="success", reason="success", last_task_id="load")


def failure_context(dag, supervisor: FakeSupervisor, run_id: str) -> dict:
    supervisor.states[run_id] = {"extract": "success", "validate": "success", "transform": "failed",
                                 "load": "upstream_failed"}
    return dag_processor_context(dag, run_id=run_id, state="failed", reason="task_failure",
                                 last_task_id="transform")


# -- fixtures: sandbox, suite database, connection --------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("reporting-sandbox")


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


def dag_reports(store: SandboxStore) -> list[dict]:
    """What the sandbox's gateway accepted as DAG reports, oldest first (their airflow_payload)."""
    rows = [r for r in store.list_messages("montecarlo", 1000) if r["operation"] == "upload_airflow_dag_result"]
    return [r["payload"]["airflow_payload"] for r in reversed(rows)]


@pytest.fixture
def engine(tmp_path, monkeypatch):
    from demobank.db.engine import dispose_engines, get_engine
    from demobank.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'demobank.db'}"
    upgrade(url)
    monkeypatch.setenv("DEMOBANK_DB_URL", url)
    yield get_engine(url)
    dispose_engines()


def set_mc_connection(monkeypatch, host: str, *, token: str = DEFAULT_MCD_TOKEN) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MONTECARLO_DEFAULT", json.dumps(
        {"conn_type": "montecarlo", "host": host, "login": DEFAULT_MCD_ID, "password": token}))


@pytest.fixture
def mc_up(monkeypatch, sandbox_url, store) -> str:
    set_mc_connection(monkeypatch, sandbox_url)
    return sandbox_url


def faults(sandbox_url: str, **config) -> None:
    requests.put(f"{sandbox_url}/faults", json={"channels": ["montecarlo"], **config}, timeout=5).raise_for_status()


# -- payloads -------------------------------------------------------------------------------------------------------


def test_success_report_names_exactly_the_dags_inlets_outlets_and_dependencies(
        supervisor, engine, mc_up, store) -> None:
    dag = make_dag()
    context = success_context(dag, supervisor, "manual__ok")

    outcome = MonteCarloRunReporter().report(context)

    assert outcome.status == "accepted", outcome
    (sent,) = dag_reports(store)
    assert set(sent) <= AIRFLOW_MCD_DAG_KEYS  # nothing but airflow-mcd's format at the top level
    assert (sent["dag_id"], sent["run_id"], sent["success"], sent["state"], sent["reason"]) == (
        DAG_ID, "manual__ok", True, "success", "success")
    assert (sent["start_date"], sent["end_date"]) == (START.isoformat(), (START + timedelta(seconds=42)).isoformat())
    assert sent["task_dependencies"] == DEPENDENCIES
    assert set(sent["dataset_outlet_uris"]) == OUTLETS and len(sent["dataset_outlet_uris"]) == len(OUTLETS)
    task_inlets = {i["uri"] for t in sent["tasks"] for i in t["inlets"]}
    task_outlets = {o["uri"] for t in sent["tasks"] for o in t["outlets"]}
    assert (task_inlets, task_outlets) == (INLETS, OUTLETS)
    assert {t["task_id"]: t["state"] for t in sent["tasks"]} == dict.fromkeys(DEPENDENCIES, "success")
    nested = sent["payload"]
    assert nested["dataset_inlet_uris"] == sorted(INLETS)
    assert nested["failed_task_ids"] == []
    assert nested["duration_seconds"] == 42.0
    assert sent["tags"] == ["data_factory", "test"]
    assert supervisor.asked and supervisor.asked[0].run_ids == ["manual__ok"]

    (row,) = list_reports(engine)
    assert (row["status"], row["attempts"], row["run_state"]) == ("accepted", 1, "success")
    assert (set(row["inlet_uris"]), set(row["outlet_uris"])) == (INLETS, OUTLETS)


def test_failure_report_names_the_failed_task(supervisor, engine, mc_up, store) -> None:
    dag = make_dag()
    MonteCarloRunReporter()(failure_context(dag, supervisor, "manual__bad"))  # as Airflow calls a notifier

    (sent,) = dag_reports(store)
    assert (sent["success"], sent["state"], sent["reason"]) == (False, "failed", "task_failure")
    assert sent["payload"]["failed_task_ids"] == ["transform"]
    states = {t["task_id"]: t["state"] for t in sent["tasks"]}
    assert states == {"extract": "success", "validate": "success", "transform": "failed", "load": "upstream_failed"}
    (failed_task,) = [t for t in sent["tasks"] if t["state"] == "failed"]
    assert failed_task["log_url"].endswith("/dags/df_reporting_test/runs/manual__bad/tasks/transform?try_number=1")
    (row,) = list_reports(engine)
    assert (row["failed_task_ids"], row["status"], row["success"]) == (["transform"], "accepted", False)


def test_without_the_api_server_the_contexts_task_is_named(monkeypatch) -> None:
    """Under dag.test() no supervisor answers get_task_states: the context's own task instance is used."""
    from airflow.sdk.execution_time import task_runner

    monkeypatch.delattr(task_runner, "SUPERVISOR_COMMS", raising=False)
    dag = make_dag()
    context = dag_processor_context(dag, run_id="r", state="failed", reason="task_failure", last_task_id="load")

    report = build_dag_report(context)

    assert report.failed_task_ids == ["load"]
    assert report.task_states == {"load": "failed"}
    assert {t["task_id"]: t["state"] for t in report.body["airflow_payload"]["tasks"]}["extract"] == ""


def test_minimal_context_without_a_task_instance_is_still_reported() -> None:
    """When the run has no task instance to refer to, Airflow passes only dag, run_id and reason."""
    report = build_dag_report({"dag": make_dag(), "run_id": "r0", "reason": "all_tasks_deadlocked"})
    assert (report.run_state, report.success, report.failed_task_ids) == ("failed", False, [])
    assert set(report.inlet_uris) == INLETS and set(report.outlet_uris) == OUTLETS
    json.dumps(report.body)


def test_mapped_task_states_are_folded_per_task() -> None:
    raw = {"extract": "success", "load_0": "success", "load_1": "failed", "load_2": "upstream_failed",
           "validate_0": "success", "validate_1": "skipped"}
    assert _fold_states(raw, {"extract", "load", "validate"}) == {
        "extract": "success", "load": "failed", "validate": "success"}


def test_asset_lineage_is_json_where_airflow_mcds_is_not() -> None:
    """The gap airflow-mcd 0.3.12 leaves on Airflow 3.3: an Asset's access_control is not JSON-serialisable."""
    from airflow_mcd.callbacks.utils import AirflowEventsClientUtils

    asset = _asset(DW_TX)
    with pytest.raises(TypeError, match="not JSON serializable"):
        json.dumps(AirflowEventsClientUtils._get_lineage_dict(asset))
    entry = lineage_entry(asset)
    assert json.loads(json.dumps(entry)) == {"uri": DW_TX[1], "name": DW_TX[0], "group": "asset", "extra": {},
                                             "type": "<class 'airflow.sdk.definitions.asset.Asset'>"}


def test_the_same_callback_twice_is_one_report(supervisor, engine, mc_up, store) -> None:
    dag = make_dag()
    reporter = MonteCarloRunReporter()
    first = reporter.report(success_context(dag, supervisor, "manual__twice"))
    second = reporter.report(success_context(dag, supervisor, "manual__twice"))
    assert (first.status, second.status) == ("accepted", "duplicate")
    assert first.report_id == second.report_id
    assert len(dag_reports(store)) == 1


# -- Monte Carlo down, back, hanging, refusing ----------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["503", "closed port"])
def test_monte_carlo_down_for_five_runs_then_back_all_five_arrive_once(
        outage, monkeypatch, supervisor, engine, sandbox_url, store) -> None:
    if outage == "503":
        set_mc_connection(monkeypatch, sandbox_url)
        faults(sandbox_url, error_rate=1.0, error_statuses=[503])
    else:
        set_mc_connection(monkeypatch, f"http://127.0.0.1:{free_port()}")
    dag = make_dag()
    reporter = MonteCarloRunReporter()
    run_ids = [f"scheduled__2026-01-0{day}" for day in range(1, 6)]
    for day, run_id in enumerate(run_ids, start=1):
        make = failure_context if day == 3 else success_context
        context = make(dag, supervisor, run_id)
        reporter(context)  # never raises

    rows = list_reports(engine)
    assert [r["status"] for r in rows] == ["pending"] * 5
    assert all(r["attempts"] == 1 and r["last_error"] for r in rows)
    assert dag_reports(store) == []

    still_down = report_outbox.sweep(engine, timeout=2)
    assert (still_down.claimed, still_down.accepted, still_down.pending) == (1, 0, 5)  # one try, not five
    with pytest.raises(MonteCarloUnavailableError, match="5 run report"):
        sweep_pending_reports(engine=engine, timeout=2)

    set_mc_connection(monkeypatch, sandbox_url)
    store.reset_faults()
    summary = sweep_pending_reports(engine=engine)

    assert (summary["accepted"], summary["pending"], summary["rejected"]) == (5, 0, 0)
    arrived = dag_reports(store)
    assert Counter(r["run_id"] for r in arrived) == Counter(run_ids)  # all five, each exactly once
    assert [r["success"] for r in arrived] == [True, True, False, True, True]
    assert sweep_pending_reports(engine=engine)["claimed"] == 0
    assert len(dag_reports(store)) == 5
    assert {r["status"] for r in list_reports(engine)} == {"accepted"}


def test_the_next_report_brings_the_backlog_when_monte_carlo_is_back(
        supervisor, engine, mc_up, store) -> None:
    dag = make_dag()
    reporter = MonteCarloRunReporter()
    faults(mc_up, error_rate=1.0, error_statuses=[502])
    for run_id in ("r1", "r2"):
        assert reporter.report(success_context(dag, supervisor, run_id)).status == "pending"
    store.reset_faults()

    outcome = reporter.report(success_context(dag, supervisor, "r3"))

    assert (outcome.status, outcome.flushed) == ("accepted", 2)
    assert sorted(r["run_id"] for r in dag_reports(store)) == ["r1", "r2", "r3"]


def test_bad_credentials_are_recorded_with_the_reason_and_not_retried(
        monkeypatch, supervisor, engine, sandbox_url, store) -> None:
    set_mc_connection(monkeypatch, sandbox_url, token="revoked-token")
    dag = make_dag()

    outcome = MonteCarloRunReporter().report(success_context(dag, supervisor, "manual__401"))

    assert outcome.status == "rejected"
    (row,) = list_reports(engine)
    assert (row["status"], row["http_status"]) == ("rejected", 401)
    assert "refused the credentials of connection 'montecarlo_default'" in row["last_error"]
    assert "integration key" in row["last_error"]
    assert sweep_pending_reports(engine=engine)["claimed"] == 0  # not retried by the sweep
    assert dag_reports(store) == []

    set_mc_connection(monkeypatch, sandbox_url)  # credentials fixed
    assert requeue_rejected(engine) == 1
    assert sweep_pending_reports(engine=engine)["accepted"] == 1
    assert [r["run_id"] for r in dag_reports(store)] == ["manual__401"]


def test_a_payload_monte_carlo_refuses_is_rejected_with_its_message(supervisor, engine, mc_up, store) -> None:
    from demobank.connectors.montecarlo import MonteCarloHook

    report = build_dag_report(success_context(make_dag(), supervisor, "manual__bad_payload"))
    del report.body["airflow_payload"]["state"]
    report_id, claimed = report_outbox.save_report(engine, report, conn_id="montecarlo_default")
    assert claimed

    outcome = report_outbox.deliver(engine, report_id, MonteCarloHook(), timeout=5)

    assert (outcome.status, outcome.http_status) == ("rejected", 400)
    assert "missing ['state']" in list_reports(engine)[0]["last_error"]


def test_a_hanging_monte_carlo_costs_the_callback_only_its_timeout(
        monkeypatch, supervisor, engine, mc_up, store) -> None:
    """The time a hanging Monte Carlo adds is bounded by the configured timeout (connect and read: at most 2 x 0.2 s
    here, 2 x 0.5 s by default); asserted on the timeout pycarlo hands to requests, not on the wall clock."""
    import pycarlo.core.client as pycarlo_client

    timeouts: list[float] = []
    real_request = pycarlo_client.requests.request

    def spy(*args, **kwargs):
        timeouts.append(kwargs["timeout"])
        return real_request(*args, **kwargs)

    monkeypatch.setattr(pycarlo_client.requests, "request", spy)
    faults(mc_up, latency_ms=3000, error_rate=1.0, error_statuses=[503])  # never recorded, even after the wait

    outcome = MonteCarloRunReporter(send_timeout=0.2).report(success_context(make_dag(), supervisor, "hang"))

    assert outcome.status == "pending"
    assert timeouts == [0.2]
    assert "did not answer" in list_reports(engine)[0]["last_error"]


def test_the_default_callback_timeout_fits_the_one_second_budget() -> None:
    reporter = MonteCarloRunReporter()
    assert 2 * reporter.send_timeout <= 1.0  # requests applies it to connecting and to reading
    assert reporter.budget_seconds == 1.0


def test_flushing_from_a_callback_never_outlasts_its_deadline(monkeypatch, supervisor, engine, mc_up) -> None:
    import pycarlo.core.client as pycarlo_client

    faults(mc_up, error_rate=1.0, error_statuses=[503])
    reporter = MonteCarloRunReporter()
    reporter.report(success_context(make_dag(), supervisor, "backlog"))
    timeouts: list[float] = []
    real_request = pycarlo_client.requests.request

    def spy(*args, **kwargs):
        timeouts.append(kwargs["timeout"])
        return real_request(*args, **kwargs)

    monkeypatch.setattr(pycarlo_client.requests, "request", spy)
    report_outbox.sweep(engine, timeout=10, deadline=time.monotonic() + 0.3)
    assert len(timeouts) == 1 and timeouts[0] <= 0.15  # half of what is left: connect + read
    assert report_outbox.sweep(engine, timeout=10, deadline=time.monotonic() - 1).claimed == 0


def test_a_database_outage_still_sends_the_report(monkeypatch, supervisor, mc_up, store) -> None:
    from sqlalchemy.exc import OperationalError

    def broken_engine(self):
        raise OperationalError("SELECT 1", {}, Exception("database is down"))

    monkeypatch.setattr(MonteCarloRunReporter, "_engine", broken_engine)
    outcome = MonteCarloRunReporter().report(success_context(make_dag(), supervisor, "no_db"))
    assert (outcome.report_id, outcome.status) == (None, "accepted")
    assert [r["run_id"] for r in dag_reports(store)] == ["no_db"]


def test_a_broken_context_never_fails_the_callback(engine, mc_up, store, caplog) -> None:
    MonteCarloRunReporter()({"run_id": "x"})  # no dag: cannot be reported, must not raise
    assert "Monte Carlo run report failed" in caplog.text
    assert dag_reports(store) == []


def test_sweep_with_nothing_pending_sends_nothing(engine, mc_up, store) -> None:
    assert sweep_pending_reports(engine=engine) == {"claimed": 0, "accepted": 0, "rejected": 0, "pending": 0,
                                                    "unavailable": {}}
    assert store.count_messages("montecarlo") == 0


def test_a_report_another_sender_holds_is_not_sent_twice(supervisor, engine, mc_up, store) -> None:
    report = build_dag_report(success_context(make_dag(), supervisor, "leased"))
    report_id, claimed = report_outbox.save_report(engine, report, conn_id="montecarlo_default")
    assert claimed  # the callback holds it (it is sending right now)
    assert report_outbox.sweep(engine).claimed == 0
    later = datetime.now(UTC) + report_outbox.LEASE + timedelta(seconds=1)
    assert report_outbox.claim(engine, report_id, now=later)  # a sender that died: its lease expires
