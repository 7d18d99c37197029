"""The "Send SMS" and "Send Email" workflow steps, as Airflow operators.

Thin wrappers: validation, exactly-once delivery, retries and batching live in
:mod:`demobank.connect.delivery`; the vendors' APIs in :mod:`demobank.connectors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink

from demobank.connect.delivery import (
    EmailDelivery,
    RetryPolicy,
    SmsDelivery,
    build_email_request,
    build_sms_messages,
)
from demobank.connect.ledger import DeliveryLedger, DeliveryScope
from demobank.connect.recipients import mask, mask_phone

if TYPE_CHECKING:
    from airflow.sdk import Context

    from demobank.connectors.sendgrid import SendGridHook
    from demobank.connectors.twilio import TwilioHook

TWILIO_CONSOLE = "https://console.twilio.com/us1/monitor/logs/sms"


class TwilioMessageLink(BaseOperatorLink):
    """Opens the task's message in the Twilio console (the messaging logs when it sent several)."""

    name = "Twilio console"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        sids: list[str] = [sid for sid in getattr(operator, "message_sids", None) or [] if sid]
        if len(sids) == 1:
            return f"{TWILIO_CONSOLE}/{sids[0]}"
        return TWILIO_CONSOLE if sids else ""


def _scope(context: Context) -> DeliveryScope:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return DeliveryScope(ti.dag_id, ti.run_id, ti.task_id, -1 if map_index is None else int(map_index))


def _owner(context: Context, scope: DeliveryScope) -> str:
    """The ledger claim owner of this try: ``dag/run/task/map_index/try-N/<random token>``."""
    try_number = getattr(context["ti"], "try_number", None)
    return scope.owner(try_number if isinstance(try_number, int) else None)


def _ledger() -> DeliveryLedger:
    from demobank.db.engine import get_engine

    return DeliveryLedger(get_engine())


def _masked_to(value: Any) -> Any:
    if isinstance(value, str):
        return ", ".join(mask(part.strip()) for part in value.split(",")) if value.strip() else value
    if isinstance(value, (list, tuple)):
        return [mask(str(part)) for part in value]
    return value


def _masked_messages(messages: Any) -> Any:
    if not isinstance(messages, (list, tuple)):
        return messages
    return [{**message, "to": mask_phone(str(message["to"]))} if isinstance(message, Mapping) and "to" in message
            else message for message in messages]


class _RecipientsMaskedWhenRendered(BaseOperator):
    """Keeps the rendered recipients for :meth:`execute` and leaves them masked in the task's fields, which is what
    Airflow stores as the task's rendered fields (the metadata DB and the UI's "Rendered Template")."""

    _recipient_fields: dict[str, Any] | None = None

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        self._recipient_fields = {"to": getattr(self, "to", None), "messages": getattr(self, "messages", None)}
        self.to = _masked_to(self._recipient_fields["to"])
        if hasattr(self, "messages"):
            self.messages = _masked_messages(self._recipient_fields["messages"])

    def _recipients(self, field: str) -> Any:
        """The rendered (unmasked) value of ``to`` or ``messages``; the field itself when nothing was rendered."""
        return getattr(self, field) if self._recipient_fields is None else self._recipient_fields[field]


class SendSmsOperator(_RecipientsMaskedWhenRendered):
    """Send an SMS through Twilio to one number or many ("Send SMS" node).

    :param to: E.164 number(s): one string, a comma-separated string or a list. (templated; masked once rendered)
    :param body: the text, at most 1600 characters; a path ending in ``.j2`` is rendered as a template. (templated)
    :param messages: instead of ``to``/``body``, one ``{"to", "body"}`` object per recipient. (templated)
    :param twilio_conn_id: the Twilio connection (its ``rate_limit_per_second`` paces the sends).
    :param retry_policy: attempts and backoff per message inside one try of the task (what may have been accepted
        is looked up at Twilio before it is sent again).
    :return: the message SIDs, in the order of the recipients.
    """

    template_fields: Sequence[str] = ("to", "body", "messages")
    template_ext: Sequence[str] = (".j2",)
    template_fields_renderers = {"messages": "json"}
    operator_extra_links = (TwilioMessageLink(),)
    ui_color = "#f22f46"

    def __init__(
        self,
        *,
        to: str | list[str] | None = None,
        body: str | None = None,
        messages: list[dict[str, str]] | None = None,
        twilio_conn_id: str = "twilio_default",
        retry_policy: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("pool", "connect_sms")
        super().__init__(**kwargs)
        self.to = to
        self.body = body
        self.messages = messages
        self.twilio_conn_id = twilio_conn_id
        self.retry_policy = retry_policy
        self.message_sids: list[str] = []

    @cached_property
    def hook(self) -> TwilioHook:
        from demobank.connectors.twilio import TwilioHook

        return TwilioHook(twilio_conn_id=self.twilio_conn_id)

    def execute(self, context: Context) -> list[str]:
        messages = build_sms_messages(self._recipients("to"), self.body, self._recipients("messages"))
        scope = _scope(context)
        delivery = SmsDelivery(self.hook, _ledger(), scope, rate_limit=self.hook.rate_limit_per_second,
                               retry=self.retry_policy, owner=_owner(context, scope))
        report = delivery.send(messages)
        self.message_sids = report.message_ids
        return report.message_ids


class SendEmailOperator(_RecipientsMaskedWhenRendered):
    """Send an e-mail through SendGrid to one address or many ("Send Email" node).

    One personalization per recipient (no recipient sees another), up to 1000 per request.

    :param to: address(es): one string, a comma-separated string or a list. (templated; masked once rendered)
    :param subject: the subject (required unless the dynamic template sets it). (templated)
    :param html_content: the HTML; a path ending in ``.j2`` is rendered as a template. (templated)
    :param template_id: a SendGrid dynamic template (``d-…``) instead of ``html_content``. (templated)
    :param dynamic_template_data: the template's data. (templated)
    :param sendgrid_conn_id: the SendGrid connection (sender address, sandbox mode).
    :param batch_size: personalizations per request (SendGrid allows 1000).
    :param retry_policy: attempts and backoff per request inside one try of the task (what may have been accepted
        is looked up in SendGrid's Email Activity before it is sent again).
    :return: SendGrid's message ids, one per request.
    """

    template_fields: Sequence[str] = ("to", "subject", "html_content", "template_id", "dynamic_template_data")
    template_ext: Sequence[str] = (".j2",)
    template_fields_renderers = {"html_content": "html", "dynamic_template_data": "json"}
    ui_color = "#1a82e2"

    def __init__(
        self,
        *,
        to: str | list[str],
        subject: str | None = None,
        html_content: str | None = None,
        template_id: str | None = None,
        dynamic_template_data: Mapping[str, Any] | None = None,
        sendgrid_conn_id: str = "sendgrid_default",
        batch_size: int = 1000,
        retry_policy: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("pool", "connect_email")
        super().__init__(**kwargs)
        self.to = to
        self.subject = subject
        self.html_content = html_content
        self.template_id = template_id
        self.dynamic_template_data = dynamic_template_data
        self.sendgrid_conn_id = sendgrid_conn_id
        self.batch_size = batch_size
        self.retry_policy = retry_policy

    @cached_property
    def hook(self) -> SendGridHook:
        from demobank.connectors.sendgrid import SendGridHook

        return SendGridHook(sendgrid_conn_id=self.sendgrid_conn_id)

    def execute(self, context: Context) -> list[str]:
        request = build_email_request(self._recipients("to"), self.subject, self.html_content, self.template_id,
                                      self.dynamic_template_data)
        scope = _scope(context)
        delivery = EmailDelivery(self.hook, _ledger(), scope, batch_size=self.batch_size, retry=self.retry_policy,
                                 owner=_owner(context, scope))
        report = delivery.send(request)
        return list(dict.fromkeys(report.message_ids))
