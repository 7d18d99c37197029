"""``MonteCarloHook``: Monte Carlo's integration gateway through the official ``pycarlo`` SDK.

Connection (type ``montecarlo``): login = API key id (``x-mcd-id``), password = API token (``x-mcd-token``) of
an *Airflow integration key*; host = gateway URL (empty for ``https://integrations.getmontecarlo.com``; the
local sandbox's URL, ``http://127.0.0.1:8080/sandbox``, in ``make run``); extras ``ui_url`` (Monte Carlo's web
app, default ``https://getmontecarlo.com``) and ``ui_path`` (the page a "View in Monte Carlo" link opens, a
template with ``{dag_id}``; ``&run_id=…`` is added for a run). The links are shown in Airflow's pages, so
``ui_url`` must be an absolute ``http(s)`` URL and ``ui_path`` a path on it: anything else (``javascript:``,
``data:``, a relative or protocol-relative URL) is never linked; the links fall back to the defaults, the Data
Quality tab says why, and the connection's Test button names the problem (:func:`ui_link_problem`). Like
airflow-mcd, ``mcd_id`` / ``mcd_token`` extras are accepted in place of login/password.

Why the gateway (``POST /airflow/callbacks``) and not GraphQL: it is what airflow-mcd 0.3.12 uses on Airflow 3,
and the only one of its two transports that carries lineage (task dependencies, asset URIs) at the top level;
its GraphQL mutation has no such arguments, which is why airflow-mcd's DAG reports fail there (``KeyError:
'tasks'``). The path is joined *relative* to the host (``<host>/airflow/callbacks``): pycarlo's
``urljoin(endpoint, "/airflow/callbacks")`` would drop a path prefix such as ``/sandbox``; for the real gateway
(a bare host) both give the same URL.

Every call is one HTTP request without retries (pycarlo's own client retries with backoff: 33 s for a 503, over two
minutes for a hanging gateway, see BENCHMARKS.md `montecarlo_report`): whoever
calls decides (the run reporter keeps the report and a sweep re-sends it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from airflow.sdk import BaseHook, BaseOperatorLink

from demobank.connectors._extras import extra_value
from demobank.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pycarlo.core import Client, Session

log = logging.getLogger(__name__)

GATEWAY_HOST = "https://integrations.getmontecarlo.com"
"""Monte Carlo's integration gateway (pycarlo's ``DEFAULT_MCD_IGW_ENDPOINT``), used when the host is empty."""
GATEWAY_PATH = "airflow/callbacks"
"""The Airflow callbacks route, relative to the gateway URL (see the module docstring)."""
GATEWAY_SCOPE = "AirflowCallbacks"
"""pycarlo session scope of the gateway (``airflow_mcd.hooks.constants.MCD_GATEWAY_SCOPE``)."""
DEFAULT_UI_URL = "https://getmontecarlo.com"
DEFAULT_UI_PATH = "/jobs?search={dag_id}"
"""The page a "View in Monte Carlo" link opens by default (searching the jobs for the DAG); set the
connection's extra ``ui_path`` to point elsewhere."""
UI_URL_SCHEMES = ("http", "https")
"""The only schemes a "View in Monte Carlo" link may have."""

#: HTTP statuses worth sending again later; any other 4xx is Monte Carlo's final word on that report.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class GatewayFailure:
    """Why a gateway call failed, in the terms a caller acts on.

    :param transient: worth sending again later (Monte Carlo unreachable, slow, 5xx, throttled).
    :param message: what happened and what to do, without credentials.
    :param http_status: Monte Carlo's HTTP status, None when no answer came.
    """

    transient: bool
    message: str
    http_status: int | None = None


class MonteCarloHook(BaseHook):
    """Send Airflow run reports to Monte Carlo's integration gateway.

    :param montecarlo_conn_id: the Airflow connection holding the integration key.
    :param timeout: seconds to wait for Monte Carlo on each request (connect and read each), unless a call
        passes its own.
    """

    conn_name_attr = "montecarlo_conn_id"
    default_conn_name = "montecarlo_default"
    conn_type = "montecarlo"
    hook_name = "Monte Carlo"

    def __init__(
        self, *, montecarlo_conn_id: str = default_conn_name, timeout: float = 10.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.montecarlo_conn_id = montecarlo_conn_id
        self.timeout = timeout

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.montecarlo_conn_id)

    @cached_property
    def extras(self) -> dict[str, Any]:
        return self.connection.extra_dejson

    @property
    def endpoint(self) -> str:
        """The gateway's base URL, ending with ``/``: the host, else ``MCD_API_ENDPOINT``, else Monte Carlo's."""
        host = (self.connection.host or "").strip()
        env = os.environ.get("MCD_API_ENDPOINT", "").strip()
        if host and env and env.rstrip("/") != host.rstrip("/"):
            log.warning(
                "MCD_API_ENDPOINT=%s is set but connection %r has host %s: the connection wins for the gateway",
                env, self.montecarlo_conn_id, host,
            )
        return (host or env or GATEWAY_HOST).rstrip("/") + "/"

    @property
    def callbacks_url(self) -> str:
        """The URL the reports are posted to."""
        return self.endpoint + GATEWAY_PATH

    def _credentials(self) -> tuple[str, str]:
        mcd_id = self.connection.login or self.extras.get("mcd_id")
        mcd_token = self.connection.password or self.extras.get("mcd_token")
        if not mcd_id or not mcd_token:
            raise ConfigurationError(
                f"connection {self.montecarlo_conn_id!r} has no Monte Carlo API key: set login = key id and "
                "password = token of an Airflow integration key (Monte Carlo → Settings → Integrations → Airflow)"
            )
        return str(mcd_id), str(mcd_token)

    @cached_property
    def session(self) -> Session:
        """The pycarlo session, scoped to the gateway, its endpoint taken from the connection."""
        from pycarlo.core import Session

        mcd_id, mcd_token = self._credentials()
        endpoint = self.endpoint
        session = Session(mcd_id=mcd_id, mcd_token=mcd_token, endpoint=endpoint, scope=GATEWAY_SCOPE)
        session.endpoint = endpoint  # pycarlo lets MCD_API_ENDPOINT (read at import) win over an explicit one
        return session

    @cached_property
    def client(self) -> Client:
        """The pycarlo client, built on first use."""
        from pycarlo.core import Client

        return Client(self.session)

    def get_conn(self) -> Client:
        """Return the SDK client (Airflow's hook protocol)."""
        return self.client

    def post_callback(
        self, operation: str, airflow_payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one gateway callback (one request, no retries) and return Monte Carlo's answer.

        :param operation: ``upload_airflow_dag_result``, ``upload_airflow_task_result`` or ``ping``.
        :param airflow_payload: the operation's payload (airflow-mcd's format).
        :param timeout: seconds for connecting and for reading each; the hook's ``timeout`` by default.
        :raises requests.RequestException: on no answer or an HTTP error (see :meth:`describe_failure`).
        :raises ValueError: when Monte Carlo answers ``"success": false``.
        """
        return self.send_body({"airflow_operation": operation, "airflow_payload": airflow_payload},
                              timeout=timeout)

    def send_body(self, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Send a complete gateway body, ``{"airflow_operation", "airflow_payload"}``; see :meth:`post_callback`."""
        from pycarlo.common.retries import ExponentialBackoff

        answer = self.client.make_request(
            path=GATEWAY_PATH,
            body=body,
            timeout_in_seconds=self.timeout if timeout is None else timeout,  # type: ignore[arg-type]
            retry_backoff=ExponentialBackoff(0, 0),
            should_retry=lambda _error: False,
        )
        answer = answer or {}
        if answer.get("success") is False:
            raise ValueError(f"Monte Carlo answered success=false: {answer.get('message') or answer}")
        return answer

    def test_connection(self) -> tuple[bool, str]:
        """Check the link settings, then ping the gateway: proves the URL and the integration key (the UI's Test
        button)."""
        problem = ui_link_problem(self.extras)
        if problem is not None:
            return False, (f"connection {self.montecarlo_conn_id!r}: {problem}; until then the \"View in Monte "
                           f"Carlo\" links open {DEFAULT_UI_URL}")
        try:
            answer = self.post_callback("ping", {})
        except Exception as error:  # noqa: BLE001 - the Test button reports any failure as text
            return False, f"Monte Carlo rejected the connection: {self.describe_failure(error).message}"
        resources = answer.get("resource_ids") or []
        suffix = f" (Airflow integration {resources[0]})" if resources else ""
        return True, f"Connected to Monte Carlo's gateway at {self.callbacks_url}{suffix}"

    def describe_failure(self, error: BaseException) -> GatewayFailure:
        """Classify a failed call: transient (send again later) or final, with a message that says what to do."""
        import requests

        if isinstance(error, requests.HTTPError) and error.response is not None:
            status = error.response.status_code
            detail = _answer_text(error.response)
            if status in (401, 403):
                return GatewayFailure(False, (
                    f"Monte Carlo refused the credentials of connection {self.montecarlo_conn_id!r} (HTTP {status}"
                    f"{': ' + detail if detail else ''}): set login/password to the id and token of an Airflow "
                    "integration key, then requeue the rejected reports"), status)
            if status in TRANSIENT_STATUSES or status >= 500:
                return GatewayFailure(True, f"Monte Carlo answered HTTP {status}{': ' + detail if detail else ''}",
                                      status)
            return GatewayFailure(False, f"Monte Carlo rejected the report (HTTP {status})"
                                         f"{': ' + detail if detail else ''}", status)
        if isinstance(error, requests.Timeout):
            return GatewayFailure(True, f"Monte Carlo did not answer at {self.callbacks_url} in time ({error})")
        if isinstance(error, requests.ConnectionError):
            return GatewayFailure(True, f"could not reach Monte Carlo at {self.callbacks_url} ({error})")
        if isinstance(error, ConfigurationError):
            return GatewayFailure(True, str(error))
        if isinstance(error, ValueError):
            return GatewayFailure(False, str(error))
        return GatewayFailure(True, f"{type(error).__name__}: {error}")


def _answer_text(response: Any, limit: int = 300) -> str:
    """Monte Carlo's error message from a response body (``message``/``errors``), else the text, shortened."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if body.get("message"):
            return str(body["message"])[:limit]
        if body.get("errors"):
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                             for e in body["errors"])[:limit]
    return (response.text or "").strip()[:limit]


def _unsafe_text(value: str) -> bool:
    return any(character.isspace() or ord(character) < 32 or ord(character) == 127 or character == "\\"
               for character in value)


def ui_link_problem(extras: dict[str, Any]) -> str | None:
    """What is wrong with a connection's ``ui_url`` / ``ui_path`` for a link shown in a page; ``None`` when they
    are fine or unset (the defaults apply).

    ``ui_url`` must be an absolute ``http://`` or ``https://`` URL with a host; ``ui_path`` must start with one
    ``/`` (a path on that host, e.g. ``/jobs?search={dag_id}``). Neither may hold spaces, control characters or
    backslashes. The message quotes the value (for the connection's Test button, which only its editors see).
    """
    base = extra_value(extras, MonteCarloHook.conn_type, "ui_url", None)
    if base is not None:
        text = str(base)
        parts = urlsplit(text)
        if _unsafe_text(text) or parts.scheme.lower() not in UI_URL_SCHEMES or not parts.hostname:
            return (f"ui_url {text[:100]!r} is not an absolute http(s) URL: set it to your Monte Carlo web app, e.g. "
                    f"{DEFAULT_UI_URL} (a javascript:, data: or relative URL is never linked)")
    path = extra_value(extras, MonteCarloHook.conn_type, "ui_path", None)
    if path is not None:
        text = str(path)
        if _unsafe_text(text) or not text.startswith("/") or text.startswith("//"):
            return (f"ui_path {text[:100]!r} is not a path on ui_url: it must start with a single '/', e.g. "
                    f"{DEFAULT_UI_PATH}")
    return None


def monte_carlo_url(dag_id: str, run_id: str | None = None, *,
                    montecarlo_conn_id: str = MonteCarloHook.default_conn_name) -> str:
    """Where to see a DAG (and one of its runs) in Monte Carlo, from the connection's ``ui_url``/``ui_path``.

    Falls back to :data:`DEFAULT_UI_URL` when the connection cannot be read (never raises for that), and to the
    defaults when ``ui_url`` or ``ui_path`` are not safe to link (:func:`ui_link_problem`): the result is always an
    ``http(s)`` URL.

    :param dag_id: the DAG.
    :param run_id: a run of it, added as ``run_id`` query parameter.
    :param montecarlo_conn_id: the Monte Carlo connection.
    :return: an absolute URL.
    """
    extras: dict[str, Any] = {}
    try:
        extras = BaseHook.get_connection(montecarlo_conn_id).extra_dejson
    except Exception as error:  # noqa: BLE001 - a link must render even without the connection
        log.debug("connection %r unreadable for the Monte Carlo link: %s", montecarlo_conn_id, error)
    problem = ui_link_problem(extras)
    if problem is not None:
        log.debug("connection %r: %s; linking to %s", montecarlo_conn_id, problem, DEFAULT_UI_URL)
        extras = {}
    base = str(extra_value(extras, MonteCarloHook.conn_type, "ui_url", DEFAULT_UI_URL)).rstrip("/")
    path = str(extra_value(extras, MonteCarloHook.conn_type, "ui_path", DEFAULT_UI_PATH))
    url = base + path.replace("{dag_id}", quote(dag_id, safe=""))
    if run_id:
        url += ("&" if "?" in url else "?") + urlencode({"run_id": run_id})
    return url


class MonteCarloLink(BaseOperatorLink):
    """"View in Monte Carlo" on a task: the DAG's page in Monte Carlo, for the task's run.

    Uses the operator's ``montecarlo_conn_id`` when it has one, else ``montecarlo_default``.
    """

    name = "View in Monte Carlo"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        conn_id = getattr(operator, "montecarlo_conn_id", None) or MonteCarloHook.default_conn_name
        dag_id = getattr(ti_key, "dag_id", None) or getattr(operator, "dag_id", None)
        if not dag_id:
            return ""
        return monte_carlo_url(dag_id, getattr(ti_key, "run_id", None), montecarlo_conn_id=conn_id)


def add_monte_carlo_link(*tasks: Any) -> None:
    """Give tasks the "View in Monte Carlo" extra link: operators, or what ``@task`` functions return.

    Airflow 3 computes the link when the task ends (in the worker) and stores it in XCom; the class is
    registered in the provider's ``extra-links``, so serialized DAGs accept it. ::

        add_monte_carlo_link(*dag.tasks)   # at the end of the DAG's ``with`` block

    :param tasks: operators or ``XComArg`` s (their ``operator`` is used).
    """
    for item in tasks:
        operator = getattr(item, "operator", item)
        links = tuple(getattr(operator, "operator_extra_links", ()) or ())
        if any(isinstance(link, MonteCarloLink) for link in links):
            continue
        try:
            operator.operator_extra_links = (*links, MonteCarloLink())
        except AttributeError:  # an operator whose links are a read-only property: no link, but the DAG loads
            log.warning("cannot add the Monte Carlo link to %s", getattr(operator, "task_id", operator))
