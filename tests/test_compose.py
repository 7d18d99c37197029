"""The scale-out deployment files: docker-compose.yaml validates and has the promised shape; the Dockerfile
builds the image from the pinned requirements and the package.

No Docker engine is needed: ``docker-compose config`` (Debian's docker-compose 1.29, installed by
scripts/install-system-tools.sh) validates and renders the file offline. Without docker-compose these tests
fail under CI (``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
EXPECTED_SERVICES = {"postgres", "redis", *AIRFLOW_SERVICES}


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        message = (
            "docker-compose is not installed: `apt-get install -y docker-compose` (scripts/"
            "install-system-tools.sh does it on `make install` when run as root)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _compose_config(compose_file: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: the file's ${VAR:-default}s render their defaults, whatever the caller exported.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    return subprocess.run(
        [_docker_compose(), "-f", str(compose_file), "config"],
        cwd=compose_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    result = _compose_config(COMPOSE_FILE)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict), result.stdout
    return config


@pytest.fixture(scope="module")
def services(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return rendered["services"]


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

    result = _compose_config(broken_file)

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
    assert {port["target"] for port in services["airflow-apiserver"]["ports"]} == {8080}


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


def test_init_migrates_both_databases_and_imports_settings(services: dict[str, dict[str, Any]]) -> None:
    script = _command(services["airflow-init"])
    steps = [
        "airflow db migrate",
        "python -m demobank.db upgrade --create-database",
        "python -m demobank.settings_import airflow_settings.yaml",
    ]
    positions = [script.find(step) for step in steps]

    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions)
    assert services["airflow-init"].get("restart", "no") == "no"


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
