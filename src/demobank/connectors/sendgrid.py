"""``SendGridHook``: SendGrid's v3 Web API through the official ``sendgrid`` SDK.

Connection (type ``sendgrid``): password = API key, host = optional API host (empty for
``https://api.sendgrid.com``; the local sandbox's URL in ``make run``), extras ``from_email``, ``from_name``,
``sandbox_mode``.

Why not ``apache-airflow-providers-sendgrid``: it is an e-mail backend that logs instead of raising on a failed
send and puts every recipient into one personalization.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from demobank.connectors._extras import extra_value
from demobank.exceptions import ConfigurationError

if TYPE_CHECKING:
    from sendgrid import SendGridAPIClient

SENDGRID_API_HOST = "https://api.sendgrid.com"


class SendGridHook(BaseHook):
    """Interact with SendGrid's Mail Send API.

    :param sendgrid_conn_id: the Airflow connection holding the API key.
    :param timeout: seconds to wait for SendGrid on each HTTP request.
    """

    conn_name_attr = "sendgrid_conn_id"
    default_conn_name = "sendgrid_default"
    conn_type = "sendgrid"
    hook_name = "SendGrid"

    def __init__(self, *, sendgrid_conn_id: str = default_conn_name, timeout: float = 10.0, **kwargs: Any) -> None:
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
        client.client.timeout = self.timeout
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
