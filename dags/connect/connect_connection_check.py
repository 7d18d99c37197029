"""
### Connection check

Tests every connection the suite's connectors use, as the **Test** button of *Admin → Connections* does:
Twilio (account fetch), SendGrid (API key scopes) and AWS (caller identity). One task per connection, so a
failure names the connection and the service's answer. Runs daily, and can be triggered any time after a
credential rotation.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

CONNECTIONS = ["twilio_default", "sendgrid_default", "aws_default"]


@dag(
    dag_id="connect_connection_check",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["connect", "operations"],
    default_args={
        "owner": "integration-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
    },
)
def connect_connection_check() -> None:
    @task
    def test_connection(conn_id: str) -> str:
        from demobank.connectors.health import require_connection

        return require_connection(conn_id)

    test_connection.expand(conn_id=CONNECTIONS)


connect_connection_check()
