"""The scale-out deployment files: docker-compose.yaml validates and has the promised shape (no default secrets,
ports on 127.0.0.1, demo mode off unless asked for, connections only to stand-ins that compose runs); the
Dockerfile builds the image from the pinned requirements and the package; scripts/compose-env.sh writes the
secrets.

No Docker engine is needed: ``docker-compose config`` (Debian's docker-compose 1.29, installed by
scripts/install-system-tools.sh) validates and renders the file offline. Without docker-compose these tests
fail under CI (``CI=true``) and are skipped elsewhere. The init service's script is run for real in
tests/test_compose_init.py.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from demobank.settings_import import load_settings
from tests.compose_support import COMPOSE_FILE, REQUIRED_SECRETS, compose_config, render

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
EXPECTED_SERVICES = {"postgres", "redis", "moto", *AIRFLOW_SERVICES}


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    return render()


@pytest.fixture(scope="module")
def services(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return rendered["services"]


@pytest.fixture(scope="module")
def demo_services() -> dict[str, dict[str, Any]]:
    return render(variables={**REQUIRED_SECRETS, "DEMOBANK_DEMO_MODE": "true"})["services"]


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def _workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if "airflow celery worker" in _command(svc)}


def _airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = AIRFLOW_SERVICES | set(_workers(services))
    return {name: services[name] for name in names}


def test_compose_validation_catches_errors(tmp_path: Path) -> None:
    """The check below can fail: a service depending on an undefined service is rejected."""
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["airflow-scheduler"]["depends_on"] = {"no-such-service": {"condition": "service_healthy"}}
    broken_file = tmp_path / "docker-compose.yaml"
    broken_file.write_text(yaml.safe_dump(broken))

    result = compose_config(broken_file)

    assert result.returncode != 0
    assert "no-such-service" in result.stderr


def test_compose_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    assert EXPECTED_SERVICES <= set(services), sorted(EXPECTED_SERVICES - set(services))


def test_databases_and_broker(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"]["image"] == "postgres:16"
    assert re.fullmatch(r"redis:7(\.\d+)*(-\w+)?", services["redis"]["image"])
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"


def test_commands(services: dict[str, dict[str, Any]]) -> None:
    assert _command(services["airflow-apiserver"]) == "airflow api-server"
    assert _command(services["airflow-scheduler"]) == "airflow scheduler"
    assert _command(services["airflow-dag-processor"]) == "airflow dag-processor"
    assert _command(services["airflow-triggerer"]) == "airflow triggerer"
    assert {target for _address, _published_port, target in _published(services["airflow-apiserver"])} == {8080}


def test_two_celery_workers_with_distinct_hostnames(services: dict[str, dict[str, Any]]) -> None:
    workers = _workers(services)

    assert len(workers) == 2, sorted(workers)
    hostnames = {worker.get("hostname") for worker in workers.values()}
    assert len(hostnames) == 2
    assert None not in hostnames


def test_every_airflow_service_runs_celery_from_our_image(services: dict[str, dict[str, Any]]) -> None:
    airflow = _airflow_services(services)
    shared_keys = (
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW_CONN_DEMOBANK_DB",
    )
    for name, service in airflow.items():
        env = service["environment"]
        assert service["build"]["dockerfile"] == "Dockerfile", name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false", name
        assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"].lower() == "false", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
        for key in shared_keys:
            assert env[key], f"{name}: {key} is empty"
    for key in shared_keys:
        values = {service["environment"][key] for service in airflow.values()}
        assert len(values) == 1, f"{key} differs between services: {values}"


def test_airflow_and_suite_databases_are_separate(services: dict[str, dict[str, Any]]) -> None:
    env = services["airflow-scheduler"]["environment"]
    metadata = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    suite = json.loads(env["AIRFLOW_CONN_DEMOBANK_DB"])

    assert (metadata.host, metadata.database) == ("postgres", "airflow")
    assert suite["conn_type"] == "postgres"
    assert (suite["host"], suite["schema"]) == ("postgres", "demobank")
    assert suite["login"] == metadata.username
    assert suite["password"] == metadata.password


def test_every_airflow_service_waits_for_init_and_healthy_databases(services: dict[str, dict[str, Any]]) -> None:
    for name, service in _airflow_services(services).items():
        depends_on = service["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert depends_on["airflow-init"]["condition"] == "service_completed_successfully", name


def test_init_runs_the_suites_init_command(services: dict[str, dict[str, Any]]) -> None:
    """The init service runs ``python -m demobank.compose_init`` (in the image with the package; the same command
    tests/test_compose_init.py runs), once per `up`, after moto is up (demo mode creates the bus there)."""
    from demobank.compose_init import InitSettings, plan

    init = services["airflow-init"]
    assert _command(init) == "python -m demobank.compose_init"
    assert init.get("restart", "no") == "no"
    assert init["depends_on"]["moto"]["condition"] == "service_healthy"

    demo = InitSettings(sandbox_enabled=True, seed_demo_data=True, admin_password="x", passwords_file=Path("p"),
                        settings_file="airflow_settings.yaml")
    titles = [step.title.split(" (")[0] for step in plan(demo)]
    assert titles == ["Airflow metadata database", "Demo Bank database", "Data warehouse",
                      "Pools, variables and connections", "Event targets", "Admin login", "Demo bus on moto",
                      "Core banking source", "Demo customers"]


@pytest.mark.parametrize(("secret", "value"), [*((name, None) for name in sorted(REQUIRED_SECRETS)),
                                               ("AIRFLOW_FERNET_KEY", "")])  # its old default was empty
def test_a_missing_secret_stops_compose_with_what_to_do(secret: str, value: str | None) -> None:
    """Every other variable is set; the one secret missing (or empty) fails `docker-compose config`, and the message
    names it and how to make it."""
    variables = {name: secret_value for name, secret_value in REQUIRED_SECRETS.items() if name != secret}
    variables.update({"DEMOBANK_DEMO_MODE": "true", "DEMOBANK_BIND_ADDRESS": "127.0.0.1", "AIRFLOW_API_PORT": "8080"})
    if value is not None:
        variables[secret] = value

    result = compose_config(variables=variables)

    assert result.returncode != 0, result.stdout
    assert f"{secret} is not set: run scripts/compose-env.sh (writes random secrets to .env)" in result.stderr
    if secret == "AIRFLOW_FERNET_KEY":
        assert "Fernet.generate_key().decode()" in result.stderr


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item)]
    return []


def test_no_secret_has_a_default_anywhere_in_the_file() -> None:
    """Each secret is referenced only as ${NAME:?message}, with one message: no default, no bare ${NAME} or $NAME
    that would render empty (checked on every string of the parsed file, before interpolation)."""
    texts = _strings(yaml.safe_load(COMPOSE_FILE.read_text()))
    for secret in REQUIRED_SECRETS:
        references = [reference for text in texts for reference in re.findall(r"\$\{" + secret + r"([^}]*)\}", text)]
        assert references, f"{secret} is not used"
        assert all(reference.startswith(":?") for reference in references), (secret, references)
        assert len(set(references)) == 1, f"{secret} has different messages: {set(references)}"
        assert not any(re.search(r"\$" + secret + r"\b", text) for text in texts), f"{secret} without braces"


def test_the_secrets_reach_the_services(services: dict[str, dict[str, Any]]) -> None:
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == REQUIRED_SECRETS["AIRFLOW_FERNET_KEY"]
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == REQUIRED_SECRETS["AIRFLOW_JWT_SECRET"]
    assert env["AIRFLOW__API__SECRET_KEY"] == REQUIRED_SECRETS["AIRFLOW_API_SECRET_KEY"]
    assert make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).password == REQUIRED_SECRETS["POSTGRES_PASSWORD"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == REQUIRED_SECRETS["POSTGRES_PASSWORD"]
    init = services["airflow-init"]["environment"]
    assert init["DEMOBANK_ADMIN_PASSWORD"] == REQUIRED_SECRETS["DEMOBANK_ADMIN_PASSWORD"]
    assert "DEMOBANK_ADMIN_PASSWORD" not in env  # only the init service writes the admin's password


def _published(service: dict[str, Any]) -> list[tuple[str | None, int, int]]:
    """(host address, published port, container port) of each published port, in either rendering (1.29 renders
    an address-bound port as a string, later versions as the long form)."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, str):
            address, published, target = port.split("/")[0].rsplit(":", 2)
            ports.append((address, int(published), int(target)))
        else:
            ports.append((port.get("host_ip"), int(port["published"]), int(port["target"])))
    return ports


def test_published_ports_bind_to_localhost_unless_configured(services: dict[str, dict[str, Any]]) -> None:
    published = {name: _published(service) for name, service in services.items() if service.get("ports")}
    assert published == {"airflow-apiserver": [("127.0.0.1", 8080, 8080)]}

    exposed = render(variables={**REQUIRED_SECRETS, "DEMOBANK_BIND_ADDRESS": "0.0.0.0", "AIRFLOW_API_PORT": "9090"})
    assert _published(exposed["services"]["airflow-apiserver"]) == [("0.0.0.0", 9090, 8080)]


def test_demo_mode_is_off_unless_asked_for(services: dict[str, dict[str, Any]]) -> None:
    """By default: no seeding, no sandbox on the API server; the init script then creates no connection from
    airflow_settings.yaml (tests/test_compose_init.py runs it)."""
    for name, service in _airflow_services(services).items():
        assert service["environment"]["DEMOBANK_SANDBOX_ENABLED"] == "false", name
    assert services["airflow-init"]["environment"]["DEMOBANK_SEED_DEMO_DATA"] == "false"


def test_demo_mode_runs_the_stand_ins_that_the_connections_point_at(
    demo_services: dict[str, dict[str, Any]],
) -> None:
    """With DEMOBANK_DEMO_MODE=true the API server mounts the sandbox, the init seeds, and every connection of
    airflow_settings.yaml, expanded with the init service's environment, reaches a service that compose runs
    (the sandbox on the API server, moto) or is replaced by an AIRFLOW_CONN_* environment connection."""
    api = demo_services["airflow-apiserver"]
    init_env = demo_services["airflow-init"]["environment"]
    assert api["environment"]["DEMOBANK_SANDBOX_ENABLED"] == "true"
    assert init_env["DEMOBANK_SEED_DEMO_DATA"] == "true"
    assert init_env["DEMOBANK_SANDBOX_ENABLED"] == "true"

    listening = {"airflow-apiserver": {8080}, "moto": {int(port) for port in demo_services["moto"]["expose"]}}
    settings = load_settings(ROOT / "airflow_settings.yaml", environ=init_env)
    checked = set()
    for connection in settings.connections:
        conn_id = connection["conn_id"]
        if f"AIRFLOW_CONN_{conn_id.upper()}" in init_env:
            continue  # the environment connection wins over the metadata DB's
        extra = connection.get("conn_extra") or {}
        url = connection.get("conn_host") or extra.get("endpoint_url")
        assert url, f"{conn_id} reaches nothing: {connection}"
        parts = urlsplit(url)
        assert parts.hostname in listening, f"{conn_id} points at {url}, which no compose service answers"
        assert parts.port in listening[parts.hostname], f"{conn_id}: {url}"
        if parts.hostname == "airflow-apiserver":
            assert parts.path.startswith("/sandbox"), f"{conn_id}: {url} is not the sandbox"
        checked.add(conn_id)
    assert checked == {"twilio_default", "sendgrid_default", "aws_default", "montecarlo_default", "core_banking_api"}
    for conn_id in ("demobank_db", "core_banking", "warehouse"):
        assert json.loads(init_env[f"AIRFLOW_CONN_{conn_id.upper()}"])["host"] == "postgres"


def test_compose_env_writes_each_missing_secret_once(tmp_path: Path) -> None:
    """scripts/compose-env.sh: random secrets (a valid Fernet key), owner-only, kept on a second run and next to
    other settings; with them `docker-compose config` renders."""
    from cryptography.fernet import Fernet

    env_file = tmp_path / ".env"
    env_file.write_text("DEMOBANK_DEMO_MODE=true\nAIRFLOW_JWT_SECRET=mine\n")
    env_file.chmod(0o600)
    first = subprocess.run([str(ROOT / "scripts" / "compose-env.sh"), str(env_file)], capture_output=True,
                           text=True, check=True).stdout
    assert "AIRFLOW_JWT_SECRET: kept" in first and "AIRFLOW_FERNET_KEY: created" in first
    written = env_file.read_text()
    second = subprocess.run([str(ROOT / "scripts" / "compose-env.sh"), str(env_file)], capture_output=True,
                            text=True, check=True).stdout
    assert second.count(": kept") == len(REQUIRED_SECRETS)
    assert env_file.read_text() == written

    values = dict(line.split("=", 1) for line in written.splitlines() if "=" in line and not line.startswith("#"))
    assert set(values) == {*REQUIRED_SECRETS, "DEMOBANK_DEMO_MODE"}
    assert values["AIRFLOW_JWT_SECRET"] == "mine"
    Fernet(values["AIRFLOW_FERNET_KEY"])
    assert re.fullmatch(r"[0-9a-f]{48}", values["POSTGRES_PASSWORD"])  # goes into database URLs as it is
    assert len(values["DEMOBANK_ADMIN_PASSWORD"]) >= 20

    fresh = tmp_path / "fresh.env"
    subprocess.run([str(ROOT / "scripts" / "compose-env.sh"), str(fresh)], capture_output=True, check=True)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    other = dict(line.split("=", 1) for line in fresh.read_text().splitlines() if "=" in line and line[0] != "#")
    assert other["AIRFLOW_FERNET_KEY"] != values["AIRFLOW_FERNET_KEY"]

    result = compose_config(variables={}, env_file=fresh)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert rendered["services"]["airflow-init"]["environment"]["DEMOBANK_ADMIN_PASSWORD"] == \
        other["DEMOBANK_ADMIN_PASSWORD"]


def test_the_env_file_stays_out_of_git_and_of_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def _dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions: continuation lines joined, comments dropped, ARG defaults expanded."""
    instructions: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instructions.append(re.sub(r"\s+", " ", pending + line))
        pending = ""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", "\n".join(instructions), re.M))
    return [re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), i) for i in instructions]


def test_dockerfile_installs_pinned_requirements_then_the_package() -> None:
    instructions = _dockerfile_instructions()
    copies = [i for i in instructions if i.startswith("COPY ")]

    assert re.fullmatch(r"FROM (python:3\.11-slim-bookworm|apache/airflow:3\.3\.2-python3\.11)", instructions[0])
    requirements = next(n for n, i in enumerate(instructions)
                        if "uv pip install --system --compile-bytecode -r requirements.txt" in i)
    package = next(n for n, i in enumerate(instructions) if "pip install --no-deps ." in i)
    assert "pip install uv==0.13.8" in instructions[requirements]
    assert requirements < package
    assert any(i.startswith("COPY ") and "requirements.txt" in i for i in instructions[:requirements])
    assert any(re.match(r"COPY .*\bsrc\b", i) for i in instructions[:package])
    for source in ("dags/", "plugins/", "include/", "airflow_settings.yaml"):
        assert any(source in copy.split()[-2] for copy in copies), f"{source} is not copied into the image"
    assert any(i.startswith("ENV ") and "AIRFLOW_HOME=/opt/airflow" in i for i in instructions)
    users = [i.split()[1] for i in instructions if i.startswith("USER ")]
    assert users, "the image must not run as root: add a USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert {".venv", ".airflow", ".git"} <= patterns
    assert any("__pycache__" in pattern for pattern in patterns)
    assert "src" not in patterns
    assert "requirements.txt" not in patterns
