"""``TwilioHook``: the Twilio REST API through the official ``twilio`` SDK.

Connection (type ``twilio``): login = Account SID, password = Auth Token, host = optional API base URL (empty
for Twilio itself; the local sandbox's URL in ``make run``), extras ``from_number`` or
``messaging_service_sid``, ``rate_limit_per_second``, ``timeout`` (seconds per HTTP request, default 10) and
``reconcile_after_seconds`` (how long after a send of unknown outcome the message list is trusted to show it,
default 10).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from demobank.connectors._extras import extra_value, seconds_extra
from demobank.exceptions import ConfigurationError
from demobank.masking import scrub
from demobank.retry import SendOutcome

if TYPE_CHECKING:
    from twilio.rest import Client

# The SDK logs request parameters (the To number) and headers at INFO; nothing of that belongs in task logs.
_SDK_LOGGER = logging.getLogger("demobank.connectors.twilio.sdk")
_SDK_LOGGER.setLevel(logging.WARNING)

#: Twilio error codes worth a hint: what to do about them.
ERROR_HINTS: dict[int, str] = {
    20003: "the Account SID or Auth Token of the connection is wrong: fix the connection's login/password",
    20404: "the resource does not exist: check the Account SID",
    21211: "the 'To' number is not a valid phone number: give it in E.164 form (+15551234567)",
    21212: "the 'From' number is not valid: set the connection's from_number to a number of the account",
    21408: "the account may not send to this region: enable it in the console's geo permissions",
    21602: "the message body is empty",
    21603: "no sender: set from_number or messaging_service_sid in the connection's extras",
    21606: "the 'From' number cannot send SMS: choose an SMS-capable number",
    21610: "the recipient replied STOP and is unsubscribed: do not send again",
    21614: "the 'To' number is not a mobile number",
    21617: "the body is longer than 1600 characters: shorten it",
    20429: "Twilio throttled the request: lower the connection's rate_limit_per_second",
}

_TRANSIENT_STATUSES = {429, 500, 502, 503, 504}
DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for Twilio on each HTTP request unless the hook or the connection's ``timeout`` says otherwise."""
DEFAULT_RECONCILE_AFTER = 10.0
"""Seconds after a send of unknown outcome before a message list without it proves that Twilio did not take it."""


class _HeaderRecordingHttpClient:
    """Mixin state: the headers of the last response seen by *this thread* (for ``Retry-After``)."""

    _local = threading.local()


class TwilioHook(BaseHook):
    """Interact with Twilio's Messaging API.

    :param twilio_conn_id: the Airflow connection holding the account's credentials.
    :param timeout: seconds to wait for Twilio on each HTTP request (default: the connection's extra ``timeout``,
        else 10).
    """

    conn_name_attr = "twilio_conn_id"
    default_conn_name = "twilio_default"
    conn_type = "twilio"
    hook_name = "Twilio"

    def __init__(self, *, twilio_conn_id: str = default_conn_name, timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.twilio_conn_id = twilio_conn_id
        self.timeout = timeout

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.twilio_conn_id)

    @cached_property
    def extras(self) -> dict[str, Any]:
        return self.connection.extra_dejson

    @property
    def account_sid(self) -> str:
        sid = self.connection.login
        if not sid or not sid.startswith("AC"):
            raise ConfigurationError(
                f"connection {self.twilio_conn_id!r}: the login must be the Twilio Account SID (AC…); "
                "set it in Admin → Connections"
            )
        return sid

    @property
    def from_number(self) -> str | None:
        return extra_value(self.extras, self.conn_type, "from_number")

    @property
    def messaging_service_sid(self) -> str | None:
        return extra_value(self.extras, self.conn_type, "messaging_service_sid")

    @property
    def rate_limit_per_second(self) -> float:
        return float(extra_value(self.extras, self.conn_type, "rate_limit_per_second", 1))

    @property
    def request_timeout(self) -> float:
        """Seconds to wait on each HTTP request: the hook's ``timeout``, the extra ``timeout``, or 10."""
        if self.timeout is not None:
            return float(self.timeout)
        return seconds_extra(self.extras, self.conn_type, self.twilio_conn_id, "timeout", DEFAULT_TIMEOUT,
                             minimum=0.001)

    @property
    def reconcile_after_seconds(self) -> float:
        """Seconds after a send of unknown outcome before the message list can prove the message absent."""
        return seconds_extra(self.extras, self.conn_type, self.twilio_conn_id, "reconcile_after_seconds",
                             DEFAULT_RECONCILE_AFTER)

    @cached_property
    def client(self) -> Client:
        """The SDK client, built on first use; pointed at ``host`` when the connection sets one."""
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        class RecordingHttpClient(TwilioHttpClient):
            def request(self, *args: Any, **kwargs: Any) -> Any:
                response = super().request(*args, **kwargs)
                _HeaderRecordingHttpClient._local.headers = dict(response.headers or {})
                return response

        if not self.connection.password:
            raise ConfigurationError(
                f"connection {self.twilio_conn_id!r}: the password must be the Twilio Auth Token"
            )
        http_client = RecordingHttpClient(timeout=self.request_timeout, logger=_SDK_LOGGER, pool_connections=True,
                                          max_retries=None)
        if http_client.session is not None:  # one pooled connection per sending thread
            from requests.adapters import HTTPAdapter

            for prefix in ("http://", "https://"):
                http_client.session.mount(prefix, HTTPAdapter(pool_connections=4, pool_maxsize=32))
        client = Client(self.account_sid, self.connection.password, http_client=http_client)
        if self.connection.host:
            client.api.base_url = self.connection.host.rstrip("/")
        return client

    def get_conn(self) -> Client:
        """Return the SDK client (Airflow's hook protocol)."""
        return self.client

    def test_connection(self) -> tuple[bool, str]:
        """Fetch the account: proves the SID, the token and the base URL (the UI's Test button)."""
        from twilio.base.exceptions import TwilioException

        try:
            account = self.client.api.v2010.accounts(self.account_sid).fetch()
        except (TwilioException, ConfigurationError, OSError) as error:
            return False, f"Twilio rejected the connection: {error}"
        return True, f"Connected to Twilio account {account.sid} ({account.status})"

    # -- sending -------------------------------------------------------------------------------------------

    def sender_parameters(self) -> dict[str, str]:
        """``messaging_service_sid`` or ``from_`` for ``messages.create``.

        :raises ConfigurationError: when the connection names no sender.
        """
        if self.messaging_service_sid:
            return {"messaging_service_sid": self.messaging_service_sid}
        if self.from_number:
            return {"from_": self.from_number}
        raise ConfigurationError(
            f"connection {self.twilio_conn_id!r} has no sender: set the extra 'from_number' (E.164) or "
            "'messaging_service_sid'"
        )

    def send_sms(self, to: str, body: str) -> str:
        """Send one SMS (one API call, no retry here); return its SID."""
        message = self.client.messages.create(to=to, body=body, **self.sender_parameters())
        return message.sid

    def find_sent_sms(self, to: str, body: str, since: datetime) -> str | None:
        """The SID of a message with this body to ``to`` created since ``since``, if Twilio has one.

        Used to reconcile a send whose outcome is unknown (a timeout, a 5xx, an attempt that died between Twilio's
        answer and the ledger's write). Twilio's ``DateSent`` filter only matches messages already handed to the
        carrier, so the newest page without a date filter is read too, for messages still queued (no
        ``date_sent`` yet).
        """
        for message in self.client.messages.stream(to=to, date_sent_after=since, page_size=100, limit=500):
            if message.body == body:
                return message.sid
        for message in self.client.messages.stream(to=to, page_size=50, limit=50):
            created = message.date_created
            if message.date_sent is None and message.body == body and (created is None or created >= since):
                return message.sid
        return None

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        """429, 5xx, timeouts and connection errors are worth retrying; other errors are not."""
        import requests

        status = _http_status(error)
        if status is not None:
            return status in _TRANSIENT_STATUSES
        return isinstance(error, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))

    @staticmethod
    def classify_failure(error: BaseException) -> SendOutcome:
        """What a failed ``send_sms`` tells about the message (see :class:`~demobank.retry.SendOutcome`).

        ``not_sent`` only when the request provably never reached Twilio: bad settings, an invalid URL, a refused
        connection or failed DNS lookup, a connect timeout, a failed TLS handshake. A 5xx, a read timeout, a reset
        after connecting and anything unforeseen are ``unknown``; any other answer of Twilio is ``refused``.
        """
        import requests
        from urllib3.exceptions import NewConnectionError

        status = _http_status(error)
        if status is not None:
            return SendOutcome.UNKNOWN if status >= 500 else SendOutcome.REFUSED
        never_left = (ConfigurationError, requests.ConnectTimeout, requests.exceptions.InvalidURL,
                      requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)
        if isinstance(error, never_left):
            return SendOutcome.NOT_SENT
        if isinstance(error, requests.exceptions.SSLError):
            return SendOutcome.NOT_SENT if _raised_in(error, "do_handshake") else SendOutcome.UNKNOWN
        if isinstance(error, requests.ConnectionError) and _caused_by(error, NewConnectionError):
            return SendOutcome.NOT_SENT
        return SendOutcome.UNKNOWN

    @staticmethod
    def retry_after(error: BaseException) -> float | None:
        """Seconds Twilio asked to wait (``Retry-After`` of this thread's last response), if any."""
        headers = getattr(_HeaderRecordingHttpClient._local, "headers", None) or {}
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    @staticmethod
    def describe_error(error: BaseException) -> tuple[str, str]:
        """(error code, message with a hint) for a failed call; never contains the recipient."""
        from twilio.base.exceptions import TwilioRestException

        if isinstance(error, TwilioRestException):
            code = error.code or error.status
            hint = ERROR_HINTS.get(int(code)) if isinstance(code, int) else None
            text = f"Twilio error {code} (HTTP {error.status})"
            return str(code), f"{text}: {hint}" if hint else f"{text}: {scrub(error.msg)}"
        return type(error).__name__, scrub(f"{type(error).__name__}: could not reach Twilio ({error})")

    @staticmethod
    def is_fatal_for_batch(error: BaseException) -> bool:
        """Errors that will fail every other message too (bad credentials, no sender): stop the batch."""
        from twilio.base.exceptions import TwilioRestException

        return isinstance(error, ConfigurationError) or (
            isinstance(error, TwilioRestException) and (error.status in (401, 403) or error.code in (20003, 21603))
        )


def _http_status(error: BaseException) -> int | None:
    """The HTTP status of Twilio's answer behind an SDK error: ``TwilioRestException.status``, or the response
    that a failed list page carries (``TwilioException("Unable to fetch page", response)``)."""
    from twilio.base.exceptions import TwilioException

    if not isinstance(error, TwilioException):
        return None
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return status
    response = error.args[1] if len(error.args) > 1 else None
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps: causes, contexts, and the exceptions that ``requests``/``urllib3`` keep in
    ``args`` and ``reason``."""
    seen: list[BaseException] = []
    pending: list[object] = [error]
    while pending and len(seen) < 20:
        item = pending.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        pending += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return seen


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(item, kind) for item in _causes(error))


def _raised_in(error: BaseException, function: str) -> bool:
    """Whether ``error`` or what it wraps was raised inside a function of that name (e.g. the TLS handshake)."""
    for item in _causes(error):
        trace = item.__traceback__
        while trace is not None:
            if trace.tb_frame.f_code.co_name == function:
                return True
            trace = trace.tb_next
    return False
