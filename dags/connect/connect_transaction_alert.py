"""
### Transaction alert

Tells a customer about a transaction on their account, by **SMS** (Twilio) and **e-mail** (SendGrid), as soon as
the core banking system triggers it. Not scheduled: each alert is one run, triggered through the REST API

```
POST /api/v2/dags/connect_transaction_alert/dagRuns
{"logical_date": null,
 "conf": {"customer_id": "CUST-00042", "amount": 1234.5, "currency": "USD", "merchant": "Blue Bottle Coffee"}}
```

from the UI's trigger form, or by a large `transaction.created` event (the `connect-transaction-alerts` target).
`amount` is a JSON number greater than 0 with at most the currency's decimal places, `currency` an ISO 4217 code
the bank supports. The customer's phone and e-mail come from the customer's record when the tasks need them, so
they are not kept in the run's conf or XCom; `phone` (E.164) and `email` may be passed to override them.

1. Airflow checks the conf against the DAG's params when the run is triggered: a conf that does not match them
   is refused with **400** and the reason (which param, which value).
2. `validate_alert` checks everything again, including what a JSON schema cannot (decimal places per currency,
   control characters) and fails the run **without retrying** with one message listing every bad field (phone
   and e-mail masked). It returns the alert for the templates, with the amount formatted (`USD 1,234.50`).
3. `send_sms` and `send_email` run in parallel, rendered from `include/templates/connect/transaction_alert.*`.
   Their recipients are looked up when their fields are rendered and shown masked in the rendered fields.
   Each delivery is recorded in the suite's delivery ledger: a retry, or clearing the run, never sends the same
   alert twice.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task

from demobank.connect.alerts import (
    MAX_CUSTOMER_ID_LENGTH,
    MAX_MERCHANT_LENGTH,
    PHONE_PATTERN,
    SUPPORTED_CURRENCIES,
    alert_recipient,
)
from demobank.connect.operators import SendEmailOperator, SendSmsOperator

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "include" / "templates"


def _include(name: str) -> str:
    """A field rendered from a template file of ``include/templates`` when the task runs.

    An ``{% include %}`` instead of the file's name: Airflow reads fields ending in ``.j2`` while it parses the
    DAG file, and a DAG file must do no I/O at import.
    """
    return '{% include "' + name + '" %}'


@dag(
    dag_id="connect_transaction_alert",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["connect"],
    template_searchpath=[str(TEMPLATES_DIR)],
    user_defined_macros={"alert_recipient": alert_recipient},
    params={
        "customer_id": Param(
            type="string",
            minLength=1,
            maxLength=MAX_CUSTOMER_ID_LENGTH,
            title="Customer id (e.g. CUST-00042)",
            description="The customer's id, e.g. CUST-00042.",
        ),
        "phone": Param(
            None,
            type=["null", "string"],
            pattern=PHONE_PATTERN,
            title="Mobile phone, E.164 (optional, e.g. +14155550142)",
            description="Leave empty to use the customer's number on record; else where the SMS goes: '+', "
            "country code and number, no spaces, e.g. +14155550142.",
        ),
        "email": Param(
            None,
            type=["null", "string"],
            format="email",
            maxLength=320,
            title="E-mail address (optional, e.g. jane.doe@example.com)",
            description="Leave empty to use the customer's address on record; else where the e-mail goes, e.g. "
            "jane.doe@example.com.",
        ),
        "amount": Param(
            type="number",
            exclusiveMinimum=0,
            title="Amount, a number greater than 0 (e.g. 1234.50)",
            description="The transaction's amount, a number greater than 0 with at most the currency's decimal "
            "places (2 for USD, 0 for JPY), e.g. 1234.50.",
        ),
        "currency": Param(
            type="string",
            enum=list(SUPPORTED_CURRENCIES),
            title="Currency (ISO 4217)",
            description="ISO 4217 code of the amount's currency.",
        ),
        "merchant": Param(
            type="string",
            minLength=1,
            maxLength=MAX_MERCHANT_LENGTH,
            title="Merchant (at most 100 characters)",
            description="The merchant's name as the customer knows it, e.g. Blue Bottle Coffee.",
        ),
    },
    default_args={
        "owner": "integration-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
    },
)
def connect_transaction_alert() -> None:
    @task(show_return_value_in_logs=False)
    def validate_alert(params: dict | None = None) -> dict[str, str]:
        """Validate the run's conf; a bad conf fails the run at once (retrying cannot fix it)."""
        import logging

        from airflow.sdk.exceptions import AirflowFailException

        from demobank.connect.alerts import validate_alert_conf

        try:
            alert = validate_alert_conf(dict(params or {}))
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        logging.getLogger(__name__).info("transaction alert validated: %s", alert.masked())
        return alert.to_template_data()

    validated = validate_alert()

    send_sms = SendSmsOperator(
        task_id="send_sms",
        to="{{ alert_recipient(params, 'phone') }}",
        body=_include("connect/transaction_alert.sms.j2"),
    )
    send_email = SendEmailOperator(
        task_id="send_email",
        # A send of unknown outcome (SendGrid timed out after taking the request) is only settled once Email
        # Activity can prove it absent, 10 minutes later: the retries reach past that instead of failing early.
        retries=3,
        retry_delay=timedelta(minutes=4),
        max_retry_delay=timedelta(minutes=15),
        to="{{ alert_recipient(params, 'email') }}",
        subject=_include("connect/transaction_alert.subject.j2"),
        html_content=_include("connect/transaction_alert.email.html.j2"),
    )
    validated >> [send_sms, send_email]


connect_transaction_alert()
