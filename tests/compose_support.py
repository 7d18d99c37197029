"""Rendering docker-compose.yaml with the real ``docker-compose config`` (Debian's docker-compose 1.29, installed by
scripts/install-system-tools.sh): no Docker engine is needed. Shared by tests/test_compose.py and
tests/test_compose_init.py. Without docker-compose the tests fail under CI (``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PROJECT_DIR

COMPOSE_FILE = PROJECT_DIR / "docker-compose.yaml"

REQUIRED_SECRETS: dict[str, str] = {
    "AIRFLOW_FERNET_KEY": "r7dXwZ0nZkP3mQ1fTqS9yV2bH4cJ6eL8aN0oU5iW3xE=",
    "AIRFLOW_JWT_SECRET": "test-jwt-secret",
    "AIRFLOW_API_SECRET_KEY": "test-api-secret-key",
    "DEMOBANK_ADMIN_PASSWORD": "test-admin-password",
    "POSTGRES_PASSWORD": "testpostgrespassword",
}
"""A value for each secret that docker-compose.yaml requires (the Fernet key is a valid one)."""


def docker_compose() -> str:
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


def compose_config(
    compose_file: Path = COMPOSE_FILE, variables: dict[str, str] | None = None, *, env_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` in a clean environment holding only ``variables`` (default: the required secrets),
    so that the file's ``${VAR:-default}``s render their defaults whatever the caller exported, and with
    ``env_file`` (default: an empty one) instead of the project's .env, which a developer may have written."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(REQUIRED_SECRETS if variables is None else variables)
    with tempfile.TemporaryDirectory(prefix="compose-env-") as empty_dir:
        if env_file is None:
            env_file = Path(empty_dir) / ".env"
            env_file.write_text("")
        return subprocess.run(
            [docker_compose(), "-f", str(compose_file), "--env-file", str(env_file), "config"],
            cwd=compose_file.parent, env=env, capture_output=True, text=True, timeout=120, check=False,
        )


def render(compose_file: Path = COMPOSE_FILE, variables: dict[str, str] | None = None) -> dict[str, Any]:
    """The rendered configuration; fails the test with docker-compose's message when it does not render."""
    result = compose_config(compose_file, variables)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict), result.stdout
    return config
