"""``TwilioHook``: the Twilio REST API through the official ``twilio`` SDK.

Connection (type ``twilio``): login = Account SID, password = Auth Token, host = optional API base URL (empty
for Twilio itself; the local sandbox's URL in ``make run``), extras ``from_number`` or
``messaging_service_sid`` and ``rate_limit_per_second``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from demobank.connectors._extras import extra_value
from demobank.exceptions import ConfigurationError

if TYPE_CHECKING:
    from twilio.rest import Client


class TwilioHook(BaseHook):
    """Interact with Twilio's Messaging API.

    :param twilio_conn_id: the Airflow connection holding the account's credentials.
    :param timeout: seconds to wait for Twilio on each HTTP request.
    """

    conn_name_attr = "twilio_conn_id"
    default_conn_name = "twilio_default"
    conn_type = "twilio"
    hook_name = "Twilio"

    def __init__(self, *, twilio_conn_id: str = default_conn_name, timeout: float = 10.0, **kwargs: Any) -> None:
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

    @cached_property
    def client(self) -> Client:
        """The SDK client, built on first use; pointed at ``host`` when the connection sets one."""
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        if not self.connection.password:
            raise ConfigurationError(
                f"connection {self.twilio_conn_id!r}: the password must be the Twilio Auth Token"
            )
        client = Client(
            self.account_sid, self.connection.password, http_client=TwilioHttpClient(timeout=self.timeout)
        )
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
