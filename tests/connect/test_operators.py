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


def test_rendered_recipients_are_kept_masked_in_what_airflow_stores(clean_sandbox, suite_engine, twilio_conn,
                                                                    sendgrid_conn) -> None:
    """Airflow stores the task's fields after rendering (``_serialize_rendered_fields``) as the rendered template
    fields: they show the recipients masked, while the messages go to the real ones."""
    from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

    dag = _dag()
    context = _context(run_id="manual__masked", params={"phone": "+15550199031", "email": "jane.masked@example.com"})
    sms = SendSmsOperator(task_id="send", dag=dag, to="{{ params.phone }}", body="Hello")
    bulk = SendSmsOperator(task_id="bulk", dag=dag, messages=[{"to": "{{ params.phone }}", "body": "Hi"}])
    email = SendEmailOperator(task_id="mail", dag=dag, to="{{ params.email }}, b.masked@example.com", subject="s",
                              html_content="<p>x</p>")
    for operator in (sms, bulk, email):
        operator.render_template_fields(context, jinja_env=dag.get_template_env())
    stored = repr([_serialize_rendered_fields(operator) for operator in (sms, bulk, email)])
    assert "+15550199031" not in stored and "masked@example.com" not in stored.replace("***@example.com", "")
    assert "+1******9031" in stored and "j***@example.com, b***@example.com" in stored
    sms.execute(context)
    email.execute({**context, "ti": SimpleNamespace(**{**vars(context["ti"]), "task_id": "mail"})})
    assert [m["to"] for m in clean_sandbox.messages("sms")] == ["+15550199031"]
    assert sorted(to for m in clean_sandbox.messages("email") for to in m["recipients"]) == [
        "b.masked@example.com", "jane.masked@example.com"]
