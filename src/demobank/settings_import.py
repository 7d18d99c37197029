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

Importing creates what is missing and keeps what exists: a connection, pool or variable that is already in the
metadata database (edited in the UI, say) is left as it is, unless ``--overwrite`` resets it to the file. Each
item's line says what happened: ``created``, ``kept`` (with the fields that differ from the file, never their
values), or with ``--overwrite`` ``updated`` / ``unchanged``; the same words as the event-target import
(:func:`demobank.events.targets.import_targets`). Running it twice leaves the same state. Run it as
``python -m demobank.settings_import airflow_settings.yaml [--overwrite] [--no-connections]``
(``--no-connections``: pools and variables only; the scale-out init does so unless demo mode is on, because the
file's connections point at local stand-ins).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
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


class Outcome(StrEnum):
    """What the import did with one connection, pool or variable."""

    CREATED = "created"
    KEPT = "kept"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ItemResult:
    """The outcome for one item of the file.

    :ivar kind: ``connection``, ``pool`` or ``variable``.
    :ivar name: its id (``conn_id``, ``pool_name``, ``variable_name``).
    :ivar outcome: what happened.
    :ivar differs: for a kept or updated item, the fields in which the database differed from the file (names
        only: a value may be a secret).
    """

    kind: str
    name: str
    outcome: Outcome
    differs: tuple[str, ...] = ()

    def describe(self) -> str:
        """``connection 'twilio_default': kept (differs from the file in host; --overwrite resets it)``."""
        text = f"{self.kind} {self.name!r}: {self.outcome}"
        if self.differs and self.outcome is Outcome.KEPT:
            text += f" (differs from the file in {', '.join(self.differs)}; --overwrite resets it)"
        elif self.differs:
            text += f" ({', '.join(self.differs)})"
        return text


_CONNECTION_ATTRIBUTES = ("conn_type", "description", "host", "schema", "login", "port")


def _connection_differences(existing: Any, wanted: Any) -> tuple[str, ...]:
    differs = [name for name in _CONNECTION_ATTRIBUTES if getattr(existing, name) != getattr(wanted, name)]
    if (existing.password or None) != (wanted.password or None):
        differs.append("password")
    if existing.extra_dejson != wanted.extra_dejson:
        differs.append("extra")
    return tuple(differs)


def _decide(exists: bool, differs: tuple[str, ...], overwrite: bool) -> Outcome:
    if not exists:
        return Outcome.CREATED
    if not overwrite:
        return Outcome.KEPT
    return Outcome.UPDATED if differs else Outcome.UNCHANGED


def _import_connections(session: Any, entries: list[dict[str, Any]], overwrite: bool) -> list[ItemResult]:
    from airflow.models.connection import Connection

    results = []
    for entry in entries:
        wanted = _connection_from_entry(entry)
        existing = session.query(Connection).filter(Connection.conn_id == wanted.conn_id).one_or_none()
        differs = () if existing is None else _connection_differences(existing, wanted)
        outcome = _decide(existing is not None, differs, overwrite)
        if outcome is Outcome.CREATED:
            session.add(wanted)
        elif outcome is Outcome.UPDATED:
            for attribute in _CONNECTION_ATTRIBUTES:
                setattr(existing, attribute, getattr(wanted, attribute))
            existing.set_password(wanted.password)
            existing.set_extra(wanted.extra)
        results.append(ItemResult("connection", wanted.conn_id, outcome, differs))
    return results


def _import_pools(session: Any, entries: list[dict[str, Any]], overwrite: bool) -> list[ItemResult]:
    from airflow.models.pool import Pool

    results = []
    for entry in entries:
        wanted = {
            "slots": entry["pool_slot"],
            "description": entry.get("pool_description") or "",
            "include_deferred": bool(entry.get("include_deferred", False)),
        }
        existing = session.query(Pool).filter(Pool.pool == entry["pool_name"]).one_or_none()
        differs = () if existing is None else tuple(
            name for name, value in wanted.items() if (getattr(existing, name) or type(value)()) != value
        )
        outcome = _decide(existing is not None, differs, overwrite)
        if outcome in (Outcome.CREATED, Outcome.UPDATED):
            Pool.create_or_update_pool(name=entry["pool_name"], session=session, **wanted)
        results.append(ItemResult("pool", entry["pool_name"], outcome, differs))
    return results


def _stored_variable_value(value: Any) -> str:
    """The text Airflow stores for ``value`` (how :meth:`Variable.set` serialises it)."""
    return value if isinstance(value, str) else json.dumps(value, indent=2)


def _import_variables(entries: list[dict[str, Any]], overwrite: bool) -> list[ItemResult]:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    results = []
    for entry in entries:
        name, value = entry["variable_name"], entry.get("variable_value")
        value = "" if value is None else value
        with create_session() as session:
            existing = session.query(Variable).filter(Variable.key == name).one_or_none()
            stored = None if existing is None else existing.val
        differs = () if existing is None or stored == _stored_variable_value(value) else ("value",)
        outcome = _decide(existing is not None, differs, overwrite)
        if outcome in (Outcome.CREATED, Outcome.UPDATED):
            Variable.set(name, value, serialize_json=not isinstance(value, str))
        results.append(ItemResult("variable", name, outcome, differs))
    return results


def import_settings(
    settings: AirflowSettings, *, overwrite: bool = False, connections: bool = True
) -> list[ItemResult]:
    """Create the connections, pools and variables of ``settings`` that are missing from Airflow's metadata
    database; keep existing ones as they are (edits made in the UI survive), unless ``overwrite``.

    :param settings: the parsed file.
    :param overwrite: also reset existing items to the file's values.
    :param connections: import the connections too (``False``: pools and variables only).
    :return: one result per item, in the file's order (connections, pools, variables).
    """
    from airflow.utils.session import create_session

    results: list[ItemResult] = []
    with create_session() as session:
        if connections:
            results += _import_connections(session, settings.connections, overwrite)
        results += _import_pools(session, settings.pools, overwrite)
    results += _import_variables(settings.variables, overwrite)
    return results


def summary(path: str, results: list[ItemResult], settings: AirflowSettings, *, connections: bool) -> str:
    """``imported F: 8 connections (8 created), 2 pools (1 created, 1 kept), 1 variables (1 kept)``."""
    parts = []
    for kind, items in (("connection", settings.connections), ("pool", settings.pools),
                        ("variable", settings.variables)):
        if kind == "connection" and not connections:
            parts.append(f"{len(items)} connections not imported (--no-connections)")
            continue
        counts = Counter(result.outcome for result in results if result.kind == kind)
        detail = ", ".join(f"{counts[outcome]} {outcome}" for outcome in Outcome if counts[outcome])
        parts.append(f"{len(items)} {kind}s" + (f" ({detail})" if detail else ""))
    return f"imported {path}: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m demobank.settings_import FILE [--overwrite] [--no-connections]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="airflow_settings.yaml")
    parser.add_argument("--overwrite", action="store_true",
                        help="also reset existing connections, pools and variables to the file's values")
    parser.add_argument("--no-connections", dest="connections", action="store_false",
                        help="import pools and variables only")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.path)
        results = import_settings(settings, overwrite=args.overwrite, connections=args.connections)
    except SettingsFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        print(result.describe())
    print(summary(args.path, results, settings, connections=args.connections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
