"""Check that the suite's connections reach their services (the same check as the UI's Test button)."""

from __future__ import annotations

from dataclasses import dataclass

from demobank.exceptions import ConfigurationError


@dataclass(frozen=True)
class ConnectionCheck:
    """The outcome of testing one Airflow connection."""

    conn_id: str
    ok: bool
    message: str


def check_connection(conn_id: str) -> ConnectionCheck:
    """Resolve ``conn_id``, build its hook from the connection type and call ``test_connection()``.

    Never raises for a failing service: the result says what failed. A connection that does not exist or
    whose type has no hook is reported the same way, with what to do.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return ConnectionCheck(
            conn_id, False, f"connection {conn_id!r} does not exist: add it in Admin → Connections "
            "or in airflow_settings.yaml"
        )
    try:
        hook = connection.get_hook()
    except (ImportError, ValueError, KeyError) as error:
        return ConnectionCheck(conn_id, False, f"connection {conn_id!r} of type {connection.conn_type!r} has "
                                               f"no usable hook: {error}")
    if not hasattr(hook, "test_connection"):
        return ConnectionCheck(conn_id, False, f"the {type(hook).__name__} hook cannot test its connection")
    try:
        ok, message = hook.test_connection()
    except (ConfigurationError, OSError, ValueError) as error:
        ok, message = False, str(error)
    return ConnectionCheck(conn_id, bool(ok), message)


def require_connection(conn_id: str) -> str:
    """Like :func:`check_connection`, but raise when the check fails.

    :raises ConnectionError: naming the connection and the service's answer.
    """
    result = check_connection(conn_id)
    if not result.ok:
        raise ConnectionError(f"connection {conn_id!r} failed its test: {result.message}")
    return result.message
