"""The launcher's configuration, without starting anything (tests/e2e starts the real thing)."""

from __future__ import annotations

import json

import pytest

from demobank.launcher import LaunchConfig, airflow_environment, port_is_free, write_admin_password
from tests.conftest import PROJECT_DIR, free_port


def test_defaults_are_the_documented_ones() -> None:
    config = LaunchConfig.from_env({"DEMOBANK_PROJECT_DIR": str(PROJECT_DIR)})
    assert (config.api_url, config.moto_url, config.admin_user, config.admin_password) == (
        "http://127.0.0.1:8080", "http://127.0.0.1:5000", "admin", "admin")
    assert config.home == PROJECT_DIR / ".airflow"


def test_admin_password_comes_from_the_environment(tmp_path) -> None:
    config = LaunchConfig.from_env({"DEMOBANK_PROJECT_DIR": str(PROJECT_DIR), "DEMOBANK_HOME": str(tmp_path),
                                    "DEMOBANK_ADMIN_PASSWORD": "correct horse"})
    path = write_admin_password(config)
    assert json.loads(path.read_text()) == {"admin": "correct horse"}
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_folder_without_dags_is_refused(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no dags/ folder"):
        LaunchConfig.from_env({"DEMOBANK_PROJECT_DIR": str(tmp_path)})


def test_environment_wires_airflow_to_the_project_and_the_stand_ins(tmp_path) -> None:
    config = LaunchConfig.from_env({"DEMOBANK_PROJECT_DIR": str(PROJECT_DIR), "DEMOBANK_HOME": str(tmp_path),
                                    "DEMOBANK_API_PORT": "8123", "DEMOBANK_MOTO_PORT": "5123"})
    env = airflow_environment(config, base={"PATH": "/usr/bin"})
    assert env["AIRFLOW_HOME"] == str(tmp_path)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(PROJECT_DIR / "dags")
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["DEMOBANK_SANDBOX_URL"] == "http://127.0.0.1:8123/sandbox"
    assert env["DEMOBANK_MOTO_URL"] == "http://127.0.0.1:5123"
    assert env["PATH"].endswith("/usr/bin")


def test_port_is_free() -> None:
    import socket

    port = free_port()
    assert port_is_free(port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert not port_is_free(port)
