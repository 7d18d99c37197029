"""
### Payment reminders

Every day, texts each customer whose payment is due the next day (`days_ahead`, default 1; 0 for payments due
the same day) a reminder with the amount and the due date, rendered from
`include/templates/connect/payment_reminder.sms.j2`.

1. `prepare_reminders` reads the customers with a payment due (`demo_customers` in the suite's database, seeded
   by `make run`; `amount_due` > 0) for the run's day (the end of its data interval; for a manual run, when it
   was triggered) and renders their SMS in batches of 100. A customer whose phone number is not E.164 is left
   out with a warning in the task's log.
2. `send_reminders` sends the batches as one "Send SMS" fan-out: one mapped task instance per batch, their
   concurrency bounded by the `connect_sms` pool and the Twilio connection's rate limit. Every message is
   recorded in the delivery ledger, so a retry or a cleared run never texts anyone twice.

A day with no one due ends successfully with nothing sent (`send_reminders` is then skipped).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from demobank.connect.operators import SendSmsOperator

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "include" / "templates"
BATCH_SIZE = 100


@dag(
    dag_id="connect_payment_reminders",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["connect"],
    template_searchpath=[str(TEMPLATES_DIR)],
    params={
        "days_ahead": Param(
            1,
            type="integer",
            minimum=0,
            maximum=30,
            title="Days ahead",
            description="Remind the payments due this many days after the run's day (0: due that day).",
        ),
    },
    default_args={
        "owner": "integration-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
)
def connect_payment_reminders() -> None:
    @task(show_return_value_in_logs=False)
    def prepare_reminders(
        params: dict | None = None, data_interval_end: datetime | None = None, dag_run: Any = None
    ) -> list[list[dict[str, str]]]:
        """Read who has a payment due for this run and render their SMS, in batches."""
        import logging

        from demobank.connect.reminders import TEMPLATE_NAME, due_customers, reminder_batches, reminder_due_date
        from demobank.db.engine import get_engine

        run_day = (data_interval_end or dag_run.run_after).astimezone(UTC).date()
        due_date = reminder_due_date(run_day, int((params or {}).get("days_ahead", 1)))
        customers = due_customers(get_engine(), due_date)
        template = (TEMPLATES_DIR / TEMPLATE_NAME).read_text(encoding="utf-8")
        batches = reminder_batches(customers, template, BATCH_SIZE)
        logging.getLogger(__name__).info(
            "payments due on %s: %d customer(s), %d reminder(s) in %d batch(es) of at most %d",
            due_date,
            len(customers),
            sum(map(len, batches)),
            len(batches),
            BATCH_SIZE,
        )
        return batches

    SendSmsOperator.partial(task_id="send_reminders").expand(messages=prepare_reminders())


connect_payment_reminders()
