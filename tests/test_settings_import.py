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


def test_import_into_airflow_metadata_db_is_an_idempotent_upsert(tmp_path) -> None:
    """Runs the real CLI twice against a freshly migrated metadata DB, then reads what Airflow sees."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "DEMOBANK_SANDBOX_URL": "http://sb:1"}
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "demobank.settings_import", str(PROJECT_DIR / "airflow_settings.yaml")],
            env=env, check=True, capture_output=True, text=True,
        )
        assert "8 connections, 2 pools, 1 variables" in done.stdout
    probe = (
        "import json\n"
        "from airflow.models.connection import Connection\n"
        "from airflow.models.pool import Pool\n"
        "from airflow.models.variable import Variable\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as s:\n"
        "    conns = {c.conn_id: [c.conn_type, c.host, c.extra_dejson] for c in s.query(Connection)}\n"
        "    pools = {p.pool: p.slots for p in s.query(Pool)}\n"
        "print(json.dumps({'conns': conns, 'pools': pools, 'env': Variable.get('demobank_environment')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(state["conns"]) == 8
    assert state["conns"]["twilio_default"][:2] == ["twilio", "http://sb:1"]
    assert state["conns"]["twilio_default"][2]["from_number"] == "+15005550006"
    assert state["pools"]["connect_sms"] == 1
    assert state["env"] == "local"
