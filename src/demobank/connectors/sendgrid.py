"""``SendGridHook``: SendGrid's v3 Web API through the official ``sendgrid`` SDK.

Connection (type ``sendgrid``): password = API key, host = optional API host (empty for
``https://api.sendgrid.com``; the local sandbox's URL in ``make run``), extras ``from_email``, ``from_name``,
``sandbox_mode``, ``timeout`` (seconds per HTTP request, default 10) and ``reconcile_after_seconds`` (how long
after a send of unknown outcome Email Activity is trusted to show it, default 600: SendGrid's activity lags).

Why not ``apache-airflow-providers-sendgrid``: it is an e-mail backend that logs instead of raising on a failed
send and puts every recipient into one personalization.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from demobank.connectors._extras import extra_value, seconds_extra
from demobank.exceptions import ConfigurationError
from demobank.masking import scrub
from demobank.retry import SendOutcome

if TYPE_CHECKING:
    from sendgrid import SendGridAPIClient

SENDGRID_API_HOST = "https://api.sendgrid.com"
MAX_PERSONALIZATIONS = 1000
"""SendGrid accepts at most this many personalizations in one mail send request."""

ERROR_HINTS: dict[int, str] = {
    400: "SendGrid refused the request body",
    401: "the API key of the connection is wrong or revoked: fix the connection's password",
    403: "the API key lacks the Mail Send scope, or the sender is not verified: check the key and from_email",
    413: "the request is too large (30 MB including attachments): send fewer recipients per request",
    429: "SendGrid throttled the request",
}
_TRANSIENT_STATUSES = {429, 500, 502, 503, 504}
DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for SendGrid on each HTTP request unless the hook or the connection's ``timeout`` says
otherwise."""
DEFAULT_RECONCILE_AFTER = 600.0
"""Seconds after a send of unknown outcome before an Email Activity search without it proves that SendGrid did not
take it. SendGrid's activity shows a message some time after it was accepted (minutes, not guaranteed): before
this delay a search that finds nothing proves nothing."""


class SendGridHook(BaseHook):
    """Interact with SendGrid's Mail Send API.

    :param sendgrid_conn_id: the Airflow connection holding the API key.
    :param timeout: seconds to wait for SendGrid on each HTTP request (default: the connection's extra
        ``timeout``, else 10).
    """

    conn_name_attr = "sendgrid_conn_id"
    default_conn_name = "sendgrid_default"
    conn_type = "sendgrid"
    hook_name = "SendGrid"

    def __init__(self, *, sendgrid_conn_id: str = default_conn_name, timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sendgrid_conn_id = sendgrid_conn_id
        self.timeout = timeout

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.sendgrid_conn_id)

    @cached_property
    def extras(self) -> dict[str, Any]:
        return self.connection.extra_dejson

    @property
    def from_email(self) -> str | None:
        return extra_value(self.extras, self.conn_type, "from_email")

    @property
    def from_name(self) -> str | None:
        return extra_value(self.extras, self.conn_type, "from_name")

    @property
    def sandbox_mode(self) -> bool:
        return str(extra_value(self.extras, self.conn_type, "sandbox_mode", False)).lower() in {"1", "true", "yes"}

    @property
    def request_timeout(self) -> float:
        """Seconds to wait on each HTTP request: the hook's ``timeout``, the extra ``timeout``, or 10."""
        if self.timeout is not None:
            return float(self.timeout)
        return seconds_extra(self.extras, self.conn_type, self.sendgrid_conn_id, "timeout", DEFAULT_TIMEOUT,
                             minimum=0.001)

    @property
    def reconcile_after_seconds(self) -> float:
        """Seconds after a send of unknown outcome before Email Activity can prove the message absent."""
        return seconds_extra(self.extras, self.conn_type, self.sendgrid_conn_id, "reconcile_after_seconds",
                             DEFAULT_RECONCILE_AFTER)

    @cached_property
    def client(self) -> SendGridAPIClient:
        """The SDK client, built on first use, with a request timeout."""
        from sendgrid import SendGridAPIClient

        if not self.connection.password:
            raise ConfigurationError(
                f"connection {self.sendgrid_conn_id!r}: the password must be a SendGrid API key (SG.…)"
            )
        client = SendGridAPIClient(
            api_key=self.connection.password, host=(self.connection.host or SENDGRID_API_HOST).rstrip("/")
        )
        client.client.timeout = self.request_timeout
        return client

    def get_conn(self) -> SendGridAPIClient:
        """Return the SDK client (Airflow's hook protocol)."""
        return self.client

    def test_connection(self) -> tuple[bool, str]:
        """Read the API key's scopes: proves the key and the host (the UI's Test button)."""
        from python_http_client.exceptions import HTTPError

        try:
            response = self.client.client.scopes.get()
        except (HTTPError, ConfigurationError, OSError) as error:
            return False, f"SendGrid rejected the connection: {error}"
        return True, f"Connected to SendGrid (HTTP {response.status_code})"

    # -- sending -------------------------------------------------------------------------------------------

    def send_mail(self, payload: dict[str, Any]) -> str | None:
        """POST one v3 mail send request (no retry here); return SendGrid's ``X-Message-Id``."""
        response = self.client.client.mail.send.post(request_body=payload)
        headers = response.headers or {}
        return next((v for k, v in headers.items() if k.lower() == "x-message-id"), None)

    def find_accepted(self, custom_arg: str, value: str) -> str | None:
        """The message id SendGrid's Email Activity has for a message carrying ``custom_args[custom_arg]=value``.

        A send request is accepted whole or not at all: one recipient found by a request-level custom arg proves
        that every recipient of that request was accepted. (Email Activity allows 6 searches a minute.)
        """
        import json

        query = f"unique_args['{custom_arg}']=\"{value}\""
        response = self.client.client.messages.get(query_params={"query": query, "limit": 1})
        messages = json.loads(response.body or b"{}").get("messages") or []
        return messages[0].get("msg_id") if messages else None

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        """429, 5xx, timeouts and connection errors are worth retrying; other errors are not."""
        from urllib.error import URLError

        from python_http_client.exceptions import HTTPError

        if isinstance(error, HTTPError):
            return error.status_code in _TRANSIENT_STATUSES
        return isinstance(error, (URLError, ConnectionError, TimeoutError))

    @staticmethod
    def classify_failure(error: BaseException) -> SendOutcome:
        """What a failed ``send_mail`` tells about its recipients (see :class:`~demobank.retry.SendOutcome`).

        The SDK sends with ``urllib``, which wraps in ``URLError`` every error raised before the whole request
        was written (refused connection, DNS, connect timeout, TLS handshake, a reset while writing) and raises
        the errors of reading the answer as they are (timeouts, resets): the first are ``not_sent``, the second
        ``unknown``, like a 5xx. Any other answer of SendGrid is ``refused``.
        """
        from urllib.error import HTTPError as UrllibHTTPError
        from urllib.error import URLError

        from python_http_client.exceptions import HTTPError

        if isinstance(error, (HTTPError, UrllibHTTPError)):
            status = error.status_code if isinstance(error, HTTPError) else error.code
            return SendOutcome.UNKNOWN if status >= 500 else SendOutcome.REFUSED
        if isinstance(error, (URLError, ConfigurationError)):
            return SendOutcome.NOT_SENT
        return SendOutcome.UNKNOWN

    @staticmethod
    def retry_after(error: BaseException) -> float | None:
        """Seconds SendGrid asked to wait (``Retry-After``, or the rate limit reset), if any."""
        import time

        headers = getattr(error, "headers", None) or {}
        lookup = {k.lower(): v for k, v in dict(headers).items()}
        try:
            if "retry-after" in lookup:
                return float(lookup["retry-after"])
            if "x-ratelimit-reset" in lookup:
                return max(0.0, float(lookup["x-ratelimit-reset"]) - time.time())
        except ValueError:
            return None
        return None

    @staticmethod
    def describe_error(error: BaseException) -> tuple[str, str]:
        """(error code, message with a hint) for a failed call; never contains the recipients."""
        import json

        from python_http_client.exceptions import HTTPError

        if isinstance(error, HTTPError):
            status = error.status_code
            detail = ""
            try:
                errors = json.loads(error.body or b"{}").get("errors") or []
                detail = "; ".join(
                    f"{e.get('field') + ': ' if e.get('field') else ''}{e.get('message')}" for e in errors[:3]
                )
            except (ValueError, AttributeError):
                detail = ""
            hint = ERROR_HINTS.get(status, "")
            return str(status), scrub(f"SendGrid HTTP {status}: {hint}{' (' + detail + ')' if detail else ''}")
        return type(error).__name__, scrub(f"{type(error).__name__}: could not reach SendGrid ({error})")

    @staticmethod
    def is_fatal_for_batch(error: BaseException) -> bool:
        """Bad key, missing scope or sender: every other request would fail the same way."""
        from python_http_client.exceptions import HTTPError

        return isinstance(error, ConfigurationError) or (
            isinstance(error, HTTPError) and error.status_code in (401, 403)
        )
