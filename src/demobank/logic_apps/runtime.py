"""The Airflow operators a Logic App's steps run as (the loader, :mod:`demobank.logic_apps.loader`, builds them).

Every step's fields are rendered with the Logic Apps' own templating (:mod:`demobank.logic_apps.templating`: the
same as a dry run) over the workflow's names, not Airflow's: ``inputs`` (the run's Params), ``trigger.event`` (the
event an ``event`` trigger's run was started with: its conf's ``event``), ``steps.<id>.output`` (an earlier step's
result, its XCom), ``item`` (in a ``for_each``) and Airflow's context names (``ds``, ``run_id``, ...).

The sending steps are the Connect operators (:class:`SendSmsOperator`, :class:`SendEmailOperator`) with their
exactly-once ledger and their recipients masked in the rendered fields; ``publish_event`` writes to the outbox with
an idempotency key of the run, the step and its map index (a retry publishes nothing twice); ``http_request`` is
the HTTP provider's :class:`HttpOperator`; ``function`` runs a registered function (its arguments and result checked
against its annotations); ``condition`` is a branch; ``for_each`` is an items task and a mapped task.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import BaseOperator

from demobank.connect.operators import SendEmailOperator, SendSmsOperator
from demobank.logic_apps.templating import evaluate, render
from demobank.logic_apps.validate import AIRFLOW_CONTEXT

if TYPE_CHECKING:
    from airflow.sdk import Context



def workflow_context(context: Context, outputs: Mapping[str, str], item: Any = None, *,
                     manual: bool = True) -> dict[str, Any]:
    """The names a step's templates see, from Airflow's task context.

    :param outputs: step id → the task whose XCom is that step's output, for the steps this one reads.
    :param item: the item of a ``for_each`` (its mapped task's argument).
    :param manual: whether the workflow has a manual trigger (its inputs are the run's Params).
    """
    ti = context["ti"]
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    names: dict[str, Any] = {name: context.get(name) for name in AIRFLOW_CONTEXT if name in context}
    moment = context.get("logical_date") or getattr(dag_run, "run_after", None)
    if moment is not None and context.get("logical_date") is None:
        # A run triggered without a logical date (Airflow 3's default) has no ds, ts, ...: the run's time stands in.
        names.update(logical_date=moment, ds=moment.strftime("%Y-%m-%d"), ds_nodash=moment.strftime("%Y%m%d"),
                     ts=moment.isoformat(), data_interval_start=context.get("data_interval_start") or moment,
                     data_interval_end=context.get("data_interval_end") or moment)
    names["inputs"] = dict(context.get("params") or {}) if manual else {}
    names["trigger"] = {"event": conf.get("event")}
    names["steps"] = {step_id: {"output": ti.xcom_pull(task_ids=task_id)} for step_id, task_id in outputs.items()}
    if item is not None:
        names["item"] = item
    return names


class LogicAppStep(BaseOperator):
    """The base of every step's operator (first in each class's bases): its template fields are rendered with the
    Logic Apps' templating.

    :param outputs: the earlier steps whose outputs its templates read (step id → task id).
    :param manual: the workflow has a manual trigger.
    :param item: a ``for_each`` item (mapped).
    """

    def __init__(self, *, outputs: Mapping[str, str] | None = None, manual: bool = True, item: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outputs = dict(outputs or {})
        self.manual = manual
        self.item = item
        self._names: dict[str, Any] | None = None

    def names(self, context: Context) -> dict[str, Any]:
        if self._names is None:
            self._names = workflow_context(context, self.outputs, self.item, manual=self.manual)
        return self._names

    def render_template(self, content: Any, context: Context, jinja_env: Any = None,
                        seen_oids: set[int] | None = None) -> Any:
        return render(content, self.names(context))


def _customer_contact(customer_id: Any, which: int, what: str) -> str:
    """The phone (``which=0``) or e-mail (1) on a customer's record; a customer without one is not enrolled in
    the bank's messages: the step is skipped, saying so (as Connect's alert delivers such an event without a run)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from demobank.connect.alerts import demo_customer_contacts

    contacts = demo_customer_contacts(str(customer_id))
    if contacts is None or not contacts[which]:
        raise AirflowSkipException(f"customer {customer_id!r} has no {what} on record (not enrolled in "
                                   "messages): nothing sent")
    return contacts[which]


class LogicAppSmsOperator(LogicAppStep, SendSmsOperator):
    """``send_sms``: Connect's Send SMS; ``customer`` sends to the phone on that customer's record."""

    template_fields: Sequence[str] = ("to", "body", "customer")

    def __init__(self, *, customer: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.customer = customer

    def execute(self, context: Context) -> dict[str, Any]:
        if self.customer is not None and self._recipient_fields is not None:
            self._recipient_fields["to"] = _customer_contact(self.customer, 0, "phone number")
        sids = super().execute(context)
        return {"recipients": len(sids), "message_ids": sids}


def text_as_html(text: str) -> str:
    """A plain-text body as HTML: escaped, its lines kept."""
    return "<p>" + html.escape(text).replace("\n\n", "</p><p>").replace("\n", "<br>") + "</p>"


class LogicAppEmailOperator(LogicAppStep, SendEmailOperator):
    """``send_email``: Connect's Send Email; ``customer`` sends to the address on that customer's record."""

    template_fields: Sequence[str] = ("to", "subject", "html_content", "customer")

    def __init__(self, *, customer: str | None = None, html: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("to", "")
        super().__init__(**kwargs)
        self.customer = customer
        self.html = html

    def execute(self, context: Context) -> dict[str, Any]:
        if self.customer is not None and self._recipient_fields is not None:
            self._recipient_fields["to"] = _customer_contact(self.customer, 1, "e-mail address")
        recipients = self._recipients("to")
        if not self.html:
            self.html_content = text_as_html(str(self.html_content))
        ids = super().execute(context)
        count = len(recipients) if isinstance(recipients, list) else len(str(recipients).split(","))
        return {"recipients": count, "message_ids": ids}


class LogicAppEventOperator(LogicAppStep):
    """``publish_event``: one event into the outbox, once per run, step and map index (a retry publishes nothing
    new); the publisher is the DAG (``dag:<dag id>``)."""

    template_fields: Sequence[str] = ("data", "idempotency_key")
    template_fields_renderers = {"data": "json"}
    ui_color = "#ff9900"

    def __init__(self, *, event_type: str, data: Any, idempotency_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event_type = event_type
        self.data = data
        self.idempotency_key = idempotency_key

    def execute(self, context: Context) -> dict[str, Any]:
        from demobank.db.engine import session_scope
        from demobank.events.outbox import dag_publisher, publish

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        key = self.idempotency_key or f"{ti.run_id}/{ti.task_id}/{-1 if map_index is None else map_index}"
        data = json.loads(self.data) if isinstance(self.data, str) else self.data
        if not isinstance(data, Mapping):
            raise ValueError(f"publish_event data rendered to {type(data).__name__}, not an object")
        with session_scope() as session:
            event_id = publish(session, self.event_type, data, publisher=dag_publisher(ti.dag_id),
                               idempotency_key=str(key))
        return {"event_id": event_id, "event_type": self.event_type}


def _response_body(response: Any) -> Any:
    if "json" in response.headers.get("Content-Type", ""):
        return response.json()
    return response.text


def _http_operator() -> type:
    """``http_request``'s operator, made when first asked for: the HTTP provider's import (aiohttp among others)
    would otherwise cost every parse of the loader, whether a workflow uses it or not."""
    from airflow.providers.http.operators.http import HttpOperator

    class LogicAppHttpOperator(LogicAppStep, HttpOperator):
        """``http_request``: the HTTP provider's operator over a connection; its output is the response's JSON (or
        text). ``auth="bearer"`` sends the connection's password as a bearer token."""

        template_fields: Sequence[str] = ("endpoint", "headers", "json_body")
        template_fields_renderers = {"headers": "json", "json_body": "json"}

        def __init__(self, *, json_body: Any = None, auth: str = "connection", **kwargs: Any) -> None:
            kwargs.setdefault("response_filter", _response_body)
            super().__init__(**kwargs)
            self.json_body = json_body
            self.auth = auth

        def execute(self, context: Context) -> Any:
            if self.json_body is not None:
                self.request_kwargs = {**(self.request_kwargs or {}), "json": self.json_body}
            if self.auth == "bearer":
                from airflow.sdk import BaseHook

                password = BaseHook.get_connection(self.http_conn_id).password
                if not password:
                    raise ValueError(f"connection {self.http_conn_id!r} has no password to send as a bearer token")
                self.headers = {**(self.headers or {}), "Authorization": f"Bearer {password}"}
            return super().execute(context)

    LogicAppHttpOperator.__module__ = __name__
    return LogicAppHttpOperator


def __getattr__(name: str) -> Any:
    if name == "LogicAppHttpOperator":
        globals()[name] = operator = _http_operator()
        return operator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class LogicAppFunctionOperator(LogicAppStep):
    """``function``: a registered function, its arguments and result checked against its annotations."""

    template_fields: Sequence[str] = ("arguments",)
    template_fields_renderers = {"arguments": "json"}
    ui_color = "#ffefeb"

    def __init__(self, *, function: str, arguments: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.function = function
        self.arguments = dict(arguments or {})

    def execute(self, context: Context) -> Any:
        from demobank.logic_apps.library import get

        return get(self.function).run(self.arguments)


class LogicAppItemsOperator(LogicAppStep):
    """The first half of a ``for_each``: renders ``items`` to the list its mapped step runs over."""

    template_fields: Sequence[str] = ("items",)

    def __init__(self, *, items: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.items = items

    def execute(self, context: Context) -> list[Any]:
        if not isinstance(self.items, list):
            raise ValueError(f"for_each items rendered to {type(self.items).__name__}, not a list")
        return self.items


class LogicAppConditionOperator(LogicAppStep, BaseBranchOperator):
    """``condition``: runs ``if_true`` when the expression holds and ``if_false`` otherwise (the others are
    skipped); steps downstream that are in neither list always run. Its output is whether it held."""

    def __init__(self, *, expression: str, if_true: Sequence[str], if_false: Sequence[str],
                 always: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expression = expression
        self.if_true = list(if_true)
        self.if_false = list(if_false)
        self.always = list(always)

    def choose_branch(self, context: Context) -> list[str]:
        self._held = evaluate(self.expression, self.names(context))
        self.log.info("%s is %s", self.expression, self._held)
        return [*(self.if_true if self._held else self.if_false), *self.always]

    def execute(self, context: Context) -> bool:
        self.do_branch(context, self.choose_branch(context))
        return self._held


__all__ = ["LogicAppConditionOperator", "LogicAppEmailOperator", "LogicAppEventOperator", "LogicAppFunctionOperator",
           "LogicAppItemsOperator", "LogicAppSmsOperator", "text_as_html",
           "workflow_context"]
