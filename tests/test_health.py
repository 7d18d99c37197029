"""The suite's health check with rejected Monte Carlo reports made through the real path (the run reporter, pycarlo,
the sandbox's gateway refusing a revoked token): the check fails, dismiss and requeue (CLI and API) clear it, a
report rejected again is new again, and once the credentials are fixed the requeued reports are accepted."""

from __future__ import annotations

import pytest

from demobank.cli import main
from demobank.data_factory.report_outbox import list_reports, rejected_summary
from demobank.data_factory.reporting import MonteCarloRunReporter, sweep_pending_reports
from demobank.health import SuiteUnhealthyError, check_suite, require_healthy
from tests.data_factory.test_reporting import (  # noqa: F401 - fixtures
    dag_reports,
    engine,
    make_dag,
    sandbox_dir,
    sandbox_url,
    set_mc_connection,
    store,
    success_context,
    supervisor,
)
from tests.events.test_target_health import health_client


def test_rejected_reports_fail_the_check_until_requeued_or_dismissed(
        monkeypatch, supervisor, engine, sandbox_url, store, capsys) -> None:  # noqa: F811
    set_mc_connection(monkeypatch, sandbox_url, token="revoked-token")
    dag = make_dag()
    reporter = MonteCarloRunReporter()
    for run_id in ("manual__1", "manual__2"):
        assert reporter.report(success_context(dag, supervisor, run_id)).status == "rejected"

    health = check_suite(engine)
    assert not health.ok and health.reports.new == 2
    [problem] = health.problems
    assert "Monte Carlo rejected 2 new run report(s) (df_reporting_test: 2)" in problem and "HTTP 401" in problem
    assert "refused the credentials of connection 'montecarlo_default'" in problem
    with pytest.raises(SuiteUnhealthyError, match="Monte Carlo rejected 2 new run report"):
        require_healthy(engine)  # the DAG's task

    assert main(["dismiss", "reports", "--dag-id", "df_reporting_test"]) == 0
    assert "2 rejected Monte Carlo run report(s) of DAG 'df_reporting_test' dismissed" in capsys.readouterr().out
    assert check_suite(engine).ok and rejected_summary(engine).total == 2  # still rejected, no longer new
    assert main(["check"]) == 0 and capsys.readouterr().out.strip() == "suite health: OK"

    # Requeued while the token is still revoked: rejected again, so new again.
    assert main(["requeue", "reports"]) == 0 and "2 rejected Monte Carlo run report(s) requeued" in (
        capsys.readouterr().out)
    assert sweep_pending_reports(engine=engine)["rejected"] == 2
    assert main(["check"]) == 1 and "Monte Carlo rejected 2 new run report(s)" in capsys.readouterr().out

    set_mc_connection(monkeypatch, sandbox_url)  # credentials fixed
    with health_client(engine, "op") as operator:
        assert operator.get("/demobank/api/v1/health").json()["summary"]["new_rejected_reports"] == 2
        answer = operator.post("/demobank/api/v1/run-reports/requeue", json={"dag_id": "df_reporting_test"})
        assert answer.status_code == 200 and answer.json()["count"] == 2
    assert sweep_pending_reports(engine=engine)["accepted"] == 2
    assert {row["status"] for row in list_reports(engine)} == {"accepted"}
    assert sorted(report["run_id"] for report in dag_reports(store)) == ["manual__1", "manual__2"]  # once each
    assert check_suite(engine).ok
