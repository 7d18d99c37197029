"""Test-wide setup: an isolated AIRFLOW_HOME (set before anything imports Airflow) and shared fixtures."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="demobank-test-airflow-"))

os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_DIR / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_DIR / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ.pop("DEMOBANK_SANDBOX_ENABLED", None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_tool(command: str, why: str) -> None:
    """Skip locally when a system tool is missing, but fail in CI, where `make test` installs it."""
    import shutil

    if shutil.which(command):
        return
    message = f"{command} is not installed ({why}); `make test` installs it with scripts/install-system-tools.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _AIRFLOW_HOME


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests run after all others, so that the shared platform boots meanwhile; tests marked ``last``
    run at the very end (e.g. the one that stops the shared live platform), tests marked ``fresh_platform`` before
    the other end-to-end tests (they look at what the platform did on its own). Every test under ``tests/e2e`` is an
    end-to-end test (marker ``e2e``), whether its module says so or not."""
    e2e_dir = PROJECT_DIR / "tests" / "e2e"
    for item in items:
        if e2e_dir in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: (item.get_closest_marker("last") is not None,
                                 item.get_closest_marker("e2e") is not None,
                                 item.get_closest_marker("fresh_platform") is None))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Boot the shared live platform now if a collected test needs it (it takes 1-2 minutes)."""
    if not session.config.option.collectonly and any("live_platform" in getattr(item, "fixturenames", ())
                                                     for item in session.items):
        from tests.e2e.conftest import start_shared_platform_early

        start_shared_platform_early()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.e2e.conftest import stop_early_platform

    stop_early_platform()


CHROMIUM = Path("/usr/bin/chromium")
"""The browser of the UI tests: Debian's chromium, driven by Playwright (its own browser download fails here)."""
ARTIFACTS = Path(__file__).resolve().parent / "ui" / "artifacts"
"""Where the browser tests save their screenshots (gitignored)."""


@pytest.fixture(scope="module")
def browser():
    """A headless chromium for the module's tests; skipped without chromium, except in CI where that fails."""
    if not CHROMIUM.exists():
        message = (f"{CHROMIUM} is missing: the browser tests drive Debian's chromium (`make install` apt-installs "
                   "it as root; or `apt-get install chromium`)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()
