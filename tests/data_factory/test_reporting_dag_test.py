"""A real Airflow run: a DAG with Asset inlets/outlets and the run reporter as its DAG-level callbacks, run with
``dag.test()`` in a fresh process (its own AIRFLOW_HOME, metadata DB and DAGS_FOLDER holding the DAG, which
``dag.test()`` needs on 3.3.2), once succeeding and once failing; the sandbox's gateway must receive one report each.

``dag.test()`` runs DAG callbacks in-process (``DagRun.execute_dag_callbacks``) with the serialized DAG and the same
task-instance context the DAG processor builds; only the task states of the other tasks are missing there (no
supervisor to ask), which tests/data_factory/test_reporting.py covers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from demobank.sandbox.settings import DEFAULT_MCD_ID, DEFAULT_MCD_TOKEN
from demobank.sandbox.store import SandboxStore
from demobank.sandbox.testing import running_sandbox

DAG_FILE = textwrap.dedent('''
    """A Data Factory-like DAG for the run-reporting test."""
    from __future__ import annotations

    import os

    import pendulum
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Asset

    from demobank.data_factory.reporting import MonteCarloRunReporter

    SOURCE = Asset(name="core.transactions", uri="postgres://core:5432/bank/public/transactions")
    TARGET = Asset(name="dw.transactions", uri="postgres://dw:5432/dw/public/transactions")
    QUARANTINE = Asset(name="dw.quarantine", uri="postgres://dw:5432/dw/public/quarantine")


    def _load():
        if os.environ.get("DF_TEST_FAIL") == "1":
            raise ValueError("load failed on purpose")


    report_run = MonteCarloRunReporter()

    with DAG("df_reporting_dag_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             tags=["data_factory"], on_success_callback=report_run, on_failure_callback=report_run):
        extract = PythonOperator(task_id="extract", python_callable=lambda: None, inlets=[SOURCE])
        validate = PythonOperator(task_id="validate", python_callable=lambda: None, outlets=[QUARANTINE])
        load = PythonOperator(task_id="load", python_callable=_load, outlets=[TARGET], retries=0)
        extract >> validate >> load
''')

RUNNER = textwrap.dedent('''
    import json, os, sys
    from airflow.utils.db import initdb
    initdb()
    from airflow.dag_processing.dagbag import DagBag
    dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"], safe_mode=False).dags["df_reporting_dag_test"]
    states = []
    for fail in ("0", "1"):
        os.environ["DF_TEST_FAIL"] = fail
        states.append(str(dag.test().state))
    print("STATES=" + json.dumps(states))
''')


def test_dag_test_run_reports_success_and_failure_to_the_sandbox(tmp_path) -> None:
    from demobank.data_factory.report_outbox import list_reports
    from demobank.db.engine import dispose_engines, get_engine
    from demobank.db.migrate import upgrade

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "df_reporting_dag_test.py").write_text(DAG_FILE)
    (tmp_path / "plugins").mkdir()
    db_url = f"sqlite:///{tmp_path / 'demobank.db'}"
    upgrade(db_url)
    (tmp_path / "sandbox").mkdir()

    with running_sandbox(tmp_path / "sandbox") as sandbox_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DEMOBANK", "MCD_"))}
        env.update({
            "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "DEMOBANK_DB_URL": db_url,
            "AIRFLOW_CONN_MONTECARLO_DEFAULT": json.dumps({"conn_type": "montecarlo", "host": sandbox_url,
                                                           "login": DEFAULT_MCD_ID, "password": DEFAULT_MCD_TOKEN}),
        })
        done = subprocess.run([sys.executable, "-c", RUNNER], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        assert "STATES=" + json.dumps(["success", "failed"]) in done.stdout, done.stdout[-2000:] + done.stderr[-4000:]
        rows = SandboxStore(tmp_path / "sandbox" / "sandbox.db").list_messages("montecarlo", 100)

    reports = [r["payload"]["airflow_payload"] for r in reversed(rows) if r["operation"] == "upload_airflow_dag_result"]
    assert [(r["state"], r["success"], r["reason"]) for r in reports] == [
        ("success", True, "success"), ("failed", False, "task_failure")]
    ok, failed = reports
    for report in reports:
        assert report["dag_id"] == "df_reporting_dag_test"
        assert report["task_dependencies"] == {"extract": ["validate"], "validate": ["load"], "load": []}
        assert {i["uri"] for t in report["tasks"] for i in t["inlets"]} == {
            "postgres://core:5432/bank/public/transactions"}
        assert sorted(report["dataset_outlet_uris"]) == [
            "postgres://dw:5432/dw/public/quarantine", "postgres://dw:5432/dw/public/transactions"]
        assert report["payload"]["dataset_inlet_uris"] == ["postgres://core:5432/bank/public/transactions"]
    assert ok["payload"]["failed_task_ids"] == []
    assert failed["payload"]["failed_task_ids"] == ["load"]
    assert [t["state"] for t in failed["tasks"] if t["task_id"] == "load"] == ["failed"]

    stored = list_reports(get_engine(db_url))
    dispose_engines()
    assert sorted((r["run_state"], r["status"]) for r in stored) == [("failed", "accepted"), ("success", "accepted")]
