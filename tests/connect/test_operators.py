"""The operators as Airflow runs them: template rendering with the DAG's Jinja environment, then execute()."""

from __future__ import annotations

from types import SimpleNamespace

import jinja2
import pytest

from demobank.connect.operators import SendEmailOperator, SendSmsOperator, TwilioMessageLink
from tests.conftest import PROJECT_DIR


def _dag():
    import pendulum
    from airflow.sdk import DAG

    return DAG("connect_operator_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
               template_searchpath=[str(PROJECT_DIR / "include" / "templates")])


def _context(run_id: str = "manual__1", params: dict | None = None) -> dict:
    ti = SimpleNamespace(dag_id="connect_operator_test", run_id=run_id, task_id="send", map_index=-1,
                         xcom_pull=lambda **_: {})
    return {"ti": ti, "params": params or {}, "run_id": run_id}


def test_unknown_template_fails_at_render_and_sends_nothing(clean_sandbox) -> None:
    dag = _dag()
    operator = SendSmsOperator(task_id="send", dag=dag, to="+15550199020",
                               body='{% include "connect/no_such_template.sms.j2" %}')
    with pytest.raises(jinja2.TemplateNotFound, match=r"connect/no_such_template\.sms\.j2"):
        operator.render_template_fields(_context(), jinja_env=dag.get_template_env())
    assert clean_sandbox.messages("sms") == []


def test_rendered_sms_is_sent_and_linked_to_the_console(clean_sandbox, suite_engine, twilio_conn) -> None:
    dag = _dag()
    operator = SendSmsOperator(task_id="send", dag=dag, to="{{ params.phone }}", body="Paid {{ params.amount }}")
    context = _context(params={"phone": "+15550199021", "amount": "USD 5.00"})
    operator.render_template_fields(context, jinja_env=dag.get_template_env())
    sids = operator.execute(context)
    assert [m["body"] for m in clean_sandbox.messages("sms")] == ["Paid USD 5.00"]
    assert TwilioMessageLink().get_link(operator, ti_key=None).endswith(sids[0])
    assert operator.execute(context) == sids  # a retry: same SIDs, nothing sent
    assert len(clean_sandbox.messages("sms")) == 1


def test_email_operator_returns_one_id_per_request(clean_sandbox, suite_engine, sendgrid_conn) -> None:
    operator = SendEmailOperator(task_id="send", dag=_dag(), to=[f"op{i}@example.com" for i in range(1500)],
                                 subject="Hello", html_content="<p>Hi</p>")
    ids = operator.execute(_context(run_id="manual__2"))
    assert len(ids) == 2
    assert len(clean_sandbox.messages("email")) == 2


def test_operators_default_to_the_connect_pools() -> None:
    dag = _dag()
    assert SendSmsOperator(task_id="a", dag=dag, to="+15550199022", body="x").pool == "connect_sms"
    assert SendEmailOperator(task_id="b", dag=dag, to="a@example.com", subject="s", html_content="h").pool == \
        "connect_email"
