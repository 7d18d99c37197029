"""Load ``airflow_settings.yaml`` (Astronomer's format) into Airflow's metadata database.

The file has one top-level key, ``airflow``, holding ``connections``, ``pools`` and ``variables``::

    airflow:
      connections:
        - conn_id: twilio_default
          conn_type: twilio
          conn_host: ...
          conn_login: ...
          conn_password: ...
          conn_port: ...
          conn_schema: ...
          conn_extra: {from_number: "+15005550006"}
      pools:
        - pool_name: connect_sms
          pool_slot: 4
          pool_description: ...
      variables:
        - variable_name: demobank_alert_threshold
          variable_value: "1000"

One extension to Astronomer's format: string values may refer to environment variables as ``${NAME}`` or
``${NAME:-default}``, so the same file serves ``make run`` (local paths and ports) and the scale-out shape
(service host names). A reference to an unset variable with no default is an error, not an empty string.

Importing is an upsert: running it twice leaves the same state. Run it as
``python -m demobank.settings_import airflow_settings.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_ENV_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")

_CONNECTION_FIELDS = {
    "conn_id",
    "conn_type",
    "conn_host",
    "conn_schema",
    "conn_login",
    "conn_password",
    "conn_port",
    "conn_extra",
    "conn_description",
    "conn_uri",
}


class SettingsFileError(ValueError):
    """``airflow_settings.yaml`` is malformed; the message says where and how to fix it."""


@dataclass
class AirflowSettings:
    """The parsed content of an ``airflow_settings.yaml`` file, environment references expanded."""

    connections: list[dict[str, Any]] = field(default_factory=list)
    pools: list[dict[str, Any]] = field(default_factory=list)
    variables: list[dict[str, Any]] = field(default_factory=list)


def expand_env(value: Any, environ: dict[str, str] | None = None, *, where: str = "") -> Any:
    """Expand ``${NAME}`` / ``${NAME:-default}`` in every string of ``value`` (recursively).

    :param value: a scalar, list or mapping from the YAML file.
    :param environ: the environment to read (defaults to ``os.environ``).
    :param where: location used in error messages.
    :raises SettingsFileError: when a referenced variable is unset and has no default.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group("name"), match.group("default")
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise SettingsFileError(
                f"{where}: environment variable {name} is not set and has no default; "
                f"set it or write ${{{name}:-default}}"
            )

        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, list):
        return [expand_env(item, env, where=f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: expand_env(item, env, where=f"{where}.{key}") for key, item in value.items()}
    return value


def parse_settings(text: str, *, source: str = "airflow_settings.yaml", environ: dict[str, str] | None = None
                   ) -> AirflowSettings:
    """Parse and validate the YAML text of a settings file.

    :raises SettingsFileError: with the file, the entry and the problem.
    """
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise SettingsFileError(f"{source} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("airflow", {}), dict):
        raise SettingsFileError(f"{source}: expected a mapping with a top-level 'airflow' key")
    section = document.get("airflow") or {}
    unknown = set(section) - {"connections", "pools", "variables"}
    if unknown:
        raise SettingsFileError(
            f"{source}: unknown key(s) under 'airflow': {sorted(unknown)}; "
            "allowed are connections, pools, variables"
        )
    settings = AirflowSettings()
    for index, entry in enumerate(section.get("connections") or []):
        where = f"{source}: airflow.connections[{index}]"
        if not isinstance(entry, dict) or not entry.get("conn_id"):
            raise SettingsFileError(f"{where}: every connection needs a conn_id")
        unknown = set(entry) - _CONNECTION_FIELDS
        if unknown:
            raise SettingsFileError(f"{where} ({entry['conn_id']}): unknown field(s) {sorted(unknown)}")
        if not entry.get("conn_type") and not entry.get("conn_uri"):
            raise SettingsFileError(f"{where} ({entry['conn_id']}): give conn_type (or conn_uri)")
        settings.connections.append(expand_env(entry, environ, where=where))
    for index, entry in enumerate(section.get("pools") or []):
        where = f"{source}: airflow.pools[{index}]"
        if not isinstance(entry, dict) or not entry.get("pool_name"):
            raise SettingsFileError(f"{where}: every pool needs a pool_name")
        slots = entry.get("pool_slot")
        if not isinstance(slots, int) or slots < -1:
            raise SettingsFileError(
                f"{where} ({entry['pool_name']}): pool_slot must be an integer >= 0 (or -1 for unlimited), "
                f"got {slots!r}"
            )
        settings.pools.append(expand_env(entry, environ, where=where))
    for index, entry in enumerate(section.get("variables") or []):
        where = f"{source}: airflow.variables[{index}]"
        if not isinstance(entry, dict) or not entry.get("variable_name"):
            raise SettingsFileError(f"{where}: every variable needs a variable_name")
        settings.variables.append(expand_env(entry, environ, where=where))
    return settings


def load_settings(path: str | Path, environ: dict[str, str] | None = None) -> AirflowSettings:
    """Read and parse a settings file.

    :raises SettingsFileError: when the file is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise SettingsFileError(f"settings file {path} does not exist")
    return parse_settings(path.read_text(encoding="utf-8"), source=str(path), environ=environ)


def _connection_from_entry(entry: dict[str, Any]) -> Any:
    from airflow.models.connection import Connection

    if entry.get("conn_uri"):
        return Connection(conn_id=entry["conn_id"], uri=entry["conn_uri"])
    extra = entry.get("conn_extra")
    port = entry.get("conn_port")
    return Connection(
        conn_id=entry["conn_id"],
        conn_type=entry["conn_type"],
        description=entry.get("conn_description"),
        host=entry.get("conn_host"),
        schema=entry.get("conn_schema"),
        login=entry.get("conn_login"),
        password=entry.get("conn_password"),
        port=int(port) if port not in (None, "") else None,
        extra=json.dumps(extra) if isinstance(extra, dict) else extra,
    )


def import_settings(settings: AirflowSettings) -> dict[str, int]:
    """Upsert connections, pools and variables into Airflow's metadata database.

    :return: how many of each were written.
    """
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        for entry in settings.connections:
            wanted = _connection_from_entry(entry)
            existing = session.query(Connection).filter(Connection.conn_id == wanted.conn_id).one_or_none()
            if existing is None:
                session.add(wanted)
                continue
            for attribute in ("conn_type", "description", "host", "schema", "login", "port"):
                setattr(existing, attribute, getattr(wanted, attribute))
            existing.set_password(wanted.password)
            existing.set_extra(wanted.extra)
        for entry in settings.pools:
            Pool.create_or_update_pool(
                name=entry["pool_name"],
                slots=entry["pool_slot"],
                description=entry.get("pool_description") or "",
                include_deferred=bool(entry.get("include_deferred", False)),
                session=session,
            )
    for entry in settings.variables:
        value = entry.get("variable_value")
        serialize = not isinstance(value, str)
        Variable.set(entry["variable_name"], value if value is not None else "", serialize_json=serialize)
    return {
        "connections": len(settings.connections),
        "pools": len(settings.pools),
        "variables": len(settings.variables),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m demobank.settings_import FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="airflow_settings.yaml")
    args = parser.parse_args(argv)
    try:
        counts = import_settings(load_settings(args.path))
    except SettingsFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"imported {args.path}: {counts['connections']} connections, {counts['pools']} pools, "
        f"{counts['variables']} variables"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
