"""The report of one finished Data Factory DAG run, as stored in ``run_reports`` and sent to Monte Carlo.

Built by :mod:`demobank.data_factory.reporting` (from a DAG run's context), stored and sent by
:mod:`demobank.data_factory.report_outbox`; it knows neither.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

DAG_RESULT_OPERATION = "upload_airflow_dag_result"
"""The gateway operation of a DAG run's report (airflow-mcd's name)."""


@dataclass(frozen=True)
class DagRunReport:
    """The report of one finished DAG run: what the UI shows, and the exact gateway body sent to Monte Carlo."""

    dag_id: str
    run_id: str
    run_state: str
    success: bool
    reason: str | None
    start_date: datetime | None
    end_date: datetime | None
    failed_task_ids: list[str]
    inlet_uris: list[str]
    outlet_uris: list[str]
    task_states: dict[str, str]
    body: dict[str, Any] = field(repr=False)
    operation: str = DAG_RESULT_OPERATION

    @property
    def report_key(self) -> str:
        """Unique per DAG run and outcome: a repeated callback is the same report, a re-run is a new one."""
        end = self.end_date.isoformat() if self.end_date else ""
        return hashlib.sha256(f"{self.dag_id}\x1f{self.run_id}\x1f{self.run_state}\x1f{end}".encode()).hexdigest()

    def body_json(self) -> str:
        """The gateway body as JSON text (what is stored and sent)."""
        return json.dumps(self.body, separators=(",", ":"), sort_keys=False)
