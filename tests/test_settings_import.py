"""airflow_settings.yaml: parsing, environment expansion, clear errors, and the upsert into Airflow's DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from demobank.settings_import import SettingsFileError, expand_env, load_settings, parse_settings
from tests.conftest import PROJECT_DIR


def test_the_project_settings_parse_with_defaults() -> None:
    settings = load_settings(PROJECT_DIR / "airflow_settings.yaml", environ={})
    by_id = {c["conn_id"]: c for c in settings.connections}
    assert {"demobank_db", "twilio_default", "sendgrid_default", "aws_default", "montecarlo_default"} <= set(by_id)
    assert by_id["twilio_default"]["conn_host"] == "http://127.0.0.1:8080/sandbox"
    assert by_id["aws_default"]["conn_extra"]["endpoint_url"] == "http://127.0.0.1:5000"
    assert {p["pool_name"] for p in settings.pools} >= {"connect_sms", "connect_email"}


def test_environment_references_are_expanded() -> None:
    settings = load_settings(
        PROJECT_DIR / "airflow_settings.yaml",
        environ={"DEMOBANK_SANDBOX_URL": "http://sandbox:9000", "DEMOBANK_MOTO_URL": "http://moto:5000"},
    )
    by_id = {c["conn_id"]: c for c in settings.connections}
    assert by_id["sendgrid_default"]["conn_host"] == "http://sandbox:9000"
    assert by_id["aws_default"]["conn_extra"]["endpoint_url"] == "http://moto:5000"


def test_unset_variable_without_default_is_an_error() -> None:
    with pytest.raises(SettingsFileError, match=r"NOPE is not set.*\$\{NOPE:-default\}"):
        expand_env({"a": ["${NOPE}"]}, environ={}, where="x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("airflow: [1, 2]", "top-level 'airflow'"),
        ("airflow:\n  conections: []", "unknown key"),
        ("airflow:\n  connections:\n    - conn_type: http", "needs a conn_id"),
        ("airflow:\n  connections:\n    - conn_id: a", "give conn_type"),
        ("airflow:\n  connections:\n    - {conn_id: a, conn_type: http, conn_hots: x}", "unknown field"),
        ("airflow:\n  pools:\n    - {pool_name: p, pool_slot: many}", "pool_slot must be an integer"),
        ("airflow: {connections: [", "not valid YAML"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(SettingsFileError, match=message):
        parse_settings(text, environ={})


def test_missing_file() -> None:
    with pytest.raises(SettingsFileError, match="does not exist"):
        load_settings(PROJECT_DIR / "no-such-settings.yaml")


def test_connection_types_are_known_to_airflow() -> None:
    """Every conn_type used in airflow_settings.yaml has a provider installed (ours registers twilio, sendgrid)."""
    from airflow.providers_manager import ProvidersManager

    hooks = ProvidersManager().hooks  # the API server reads the same registry
    settings = load_settings(PROJECT_DIR / "airflow_settings.yaml", environ={})
    assert {c["conn_type"] for c in settings.connections} - set(hooks) == set()


_PROBE = """
import json
from airflow.models.connection import Connection
from airflow.models.pool import Pool
from airflow.models.variable import Variable
from airflow.utils.session import create_session
with create_session() as s:
    conns = {c.conn_id: [c.conn_type, c.host, c.login, c.password, c.extra_dejson] for c in s.query(Connection)}
    pools = {p.pool: p.slots for p in s.query(Pool)}
print(json.dumps({"conns": conns, "pools": pools, "env": Variable.get("demobank_environment")}))
"""

# What an operator does in the UI (Admin -> Connections / Pools / Variables): the same rows, other values.
_EDIT_IN_THE_UI = """
from airflow.models.connection import Connection
from airflow.models.pool import Pool
from airflow.models.variable import Variable
from airflow.utils.session import create_session
with create_session() as s:
    twilio = s.query(Connection).filter(Connection.conn_id == "twilio_default").one()
    twilio.host = None
    twilio.login = "AC" + "1" * 32
    twilio.set_password("real-auth-token")
    s.query(Pool).filter(Pool.pool == "connect_sms").one().slots = 3
Variable.set("demobank_environment", "production")
"""


def _python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _state(env: dict[str, str]) -> dict:
    return json.loads(_python(env, "-c", _PROBE).stdout.strip().splitlines()[-1])


def test_import_creates_what_is_missing_and_keeps_what_was_edited_unless_overwrite(tmp_path) -> None:
    """The real CLI against a freshly migrated metadata DB: created, then kept (an edit in the UI survives, the
    line names the field that differs, never its value), then --overwrite resets it."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "DEMOBANK_SANDBOX_URL": "http://sb:1"}
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    settings_file = str(PROJECT_DIR / "airflow_settings.yaml")
    _python(env, "-m", "airflow", "db", "migrate")

    first = _python(env, "-m", "demobank.settings_import", settings_file).stdout
    assert "connection 'twilio_default': created" in first
    assert "8 connections (8 created), 2 pools (2 created), 1 variables (1 created)" in first

    _python(env, "-c", _EDIT_IN_THE_UI)
    second = _python(env, "-m", "demobank.settings_import", settings_file).stdout
    assert ("connection 'twilio_default': kept (differs from the file in host, login, password; --overwrite resets "
            "it)") in second
    assert "connection 'sendgrid_default': kept\n" in second
    assert "pool 'connect_sms': kept (differs from the file in slots" in second
    assert "variable 'demobank_environment': kept (differs from the file in value" in second
    assert "8 connections (8 kept), 2 pools (2 kept), 1 variables (1 kept)" in second
    assert "real-auth-token" not in second
    kept = _state(env)
    assert kept["conns"]["twilio_default"][:4] == ["twilio", None, "AC" + "1" * 32, "real-auth-token"]
    assert kept["pools"]["connect_sms"] == 3
    assert kept["env"] == "production"
    assert len(kept["conns"]) == 8

    third = _python(env, "-m", "demobank.settings_import", settings_file, "--overwrite").stdout
    assert "connection 'twilio_default': updated (host, login, password)" in third
    assert "connection 'sendgrid_default': unchanged" in third
    assert "8 connections (1 updated, 7 unchanged), 2 pools (1 updated, 1 unchanged), 1 variables (1 updated)" in third
    reset = _state(env)
    assert reset["conns"]["twilio_default"][:4] == [
        "twilio", "http://sb:1", "AC00000000000000000000000000000000", "sandbox-twilio-auth-token"]
    assert reset["conns"]["twilio_default"][4]["from_number"] == "+15005550006"
    assert reset["pools"]["connect_sms"] == 1
    assert reset["env"] == "local"
