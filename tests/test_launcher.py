"""The launcher's configuration, without starting anything (tests/e2e starts the real thing)."""

from __future__ import annotations

import json

import pytest

from demobank.launcher import (
    LaunchConfig,
    LocalUser,
    airflow_environment,
    port_is_free,
    users_from_env,
    write_passwords,
)
from tests.conftest import PROJECT_DIR, free_port


def test_defaults_are_the_documented_ones() -> None:
    config = LaunchConfig.from_env({"DEMOBANK_PROJECT_DIR": str(PROJECT_DIR)})
    assert (config.api_url, config.moto_url) == ("http://127.0.0.1:8080", "http://127.0.0.1:5000")
    assert config.users == (
        LocalUser("admin", "admin", "admin", "DEMOBANK_ADMIN_PASSWORD"),
        LocalUser("operator", "op", "operator", "DEMOBANK_OPERATOR_PASSWORD"),
        LocalUser("viewer", "viewer", "viewer", "DEMOBANK_VIEWER_PASSWORD"),
    )
    assert config.home == PROJECT_DIR / ".airflow"


def test_the_users_and_their_passwords_reach_airflows_simple_auth_manager(tmp_path, monkeypatch) -> None:
    """The launcher's user list and password file, read back by Airflow's own SimpleAuthManager."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    config = LaunchConfig.from_env({"DEMOBANK_PROJECT_DIR": str(PROJECT_DIR), "DEMOBANK_HOME": str(tmp_path),
                                    "DEMOBANK_ADMIN_PASSWORD": "correct horse",
                                    "DEMOBANK_VIEWER_PASSWORD": "battery staple"})
    path = write_passwords(config)
    assert json.loads(path.read_text()) == {"admin": "correct horse", "operator": "operator",
                                            "viewer": "battery staple"}
    assert path.stat().st_mode & 0o777 == 0o600

    env = airflow_environment(config, base={"PATH": "/usr/bin"})
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,operator:op,viewer:viewer"
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"])
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(path))
    users = {user.username: user.role for user in SimpleAuthManager.get_users()}
    assert users == {"admin": "admin", "operator": "op", "viewer": "viewer"}
    assert SimpleAuthManager.get_passwords() == {"admin": "correct horse", "operator": "operator",
                                                 "viewer": "battery staple"}


def test_the_user_list_can_be_changed() -> None:
    users = users_from_env({"DEMOBANK_USERS": " alice:Admin , bob.smith:user ,carol:op",
                            "DEMOBANK_BOB_SMITH_PASSWORD": "s3cret"})
    assert users == (LocalUser("alice", "admin", "alice", "DEMOBANK_ALICE_PASSWORD"),
                     LocalUser("bob.smith", "user", "s3cret", "DEMOBANK_BOB_SMITH_PASSWORD"),
                     LocalUser("carol", "op", "carol", "DEMOBANK_CAROL_PASSWORD"))
    assert users_from_env({"DEMOBANK_USERS": "  "})[0].name == "admin"  # empty: the default list


@pytest.mark.parametrize(("listed", "words"), [
    ("admin", "entry 'admin' is not name:role"),
    ("admin:admin,,viewer:viewer", "entry '' is not name:role"),
    ("admin:root", "gives user 'admin' the role 'root', which Airflow's simple auth manager does not have: use "
                   "one of viewer, user, op, admin"),
    ("admin:admin:team-a", "entry 'admin:admin:team-a' is not name:role"),
    ("admin:admin,admin:viewer", "names 'admin' twice"),
    ("a-b:op,a_b:viewer", "users 'a-b' and 'a_b' would share the password variable DEMOBANK_A_B_PASSWORD"),
    ("-x:op", "user name '-x' is not allowed"),
])
def test_a_bad_user_list_is_refused_saying_what_to_write(listed: str, words: str) -> None:
    with pytest.raises(ValueError, match="DEMOBANK_USERS") as refused:
        users_from_env({"DEMOBANK_USERS": listed})
    assert words in str(refused.value)


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


@pytest.mark.parametrize(("value", "on"), [(None, True), ("", True), ("on", True), ("OFF", False), ("0", False),
                                           ("yes", True), ("false", False)])
def test_the_audit_recorder_is_on_unless_switched_off(value: str | None, on: bool) -> None:
    env = {"DEMOBANK_PROJECT_DIR": str(PROJECT_DIR), "DEMOBANK_HOME": "/tmp/x"}
    if value is not None:
        env["DEMOBANK_AUDIT_RECORDER"] = value
    config = LaunchConfig.from_env(env)
    assert config.audit_recorder is on
    assert config.audit_record_path == config.home / "demobank-events-audit.jsonl"


def test_a_bad_recorder_switch_says_what_to_write() -> None:
    with pytest.raises(ValueError, match="DEMOBANK_AUDIT_RECORDER='maybe' is neither on nor off"):
        LaunchConfig.from_env({"DEMOBANK_PROJECT_DIR": str(PROJECT_DIR), "DEMOBANK_AUDIT_RECORDER": "maybe"})


def test_a_step_that_may_fail_is_reported_and_the_launch_goes_on(tmp_path, capsys) -> None:
    """The Logic Apps' deploy step: a definition with a problem is not deployed, and make run still starts."""
    import sys

    from demobank.launcher import Launcher

    config = LaunchConfig.from_env({"DEMOBANK_PROJECT_DIR": str(PROJECT_DIR), "DEMOBANK_HOME": str(tmp_path)})
    config.log_dir.mkdir(parents=True)
    launcher = Launcher(config)
    failing = [sys.executable, "-c", "print('broken.yaml:3:1: steps: Field required'); raise SystemExit(1)"]
    launcher.run_step("deploy-logic-apps", failing, {}, required=False)
    out = capsys.readouterr().out
    assert "deploy-logic-apps: exit code 1, going on" in out and "broken.yaml:3:1: steps: Field required" in out
    with pytest.raises(RuntimeError, match="step 'seed' failed with exit code 1"):
        launcher.run_step("seed", failing, {})
