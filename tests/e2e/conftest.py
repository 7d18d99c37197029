"""A live platform for end-to-end tests: `make run` itself, on free ports and in a temporary AIRFLOW_HOME."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import PROJECT_DIR, free_port
from tests.e2e.api import Api

STARTUP_TIMEOUT = 420


@dataclass
class LivePlatform:
    """A running `make run`, with what the tests need to reach and then stop it."""

    process: subprocess.Popen[str]
    home: Path
    api_url: str
    moto_url: str
    output_path: Path
    seen_pids: set[int] = field(default_factory=set)
    startup_seconds: float = 0.0

    @property
    def logic_apps(self) -> Path:
        """The folder of this platform's Logic App definitions (DEMOBANK_LOGIC_APPS_DIR)."""
        return self.home.parent / f"{self.home.name}-logic-apps"

    def token(self, username: str = "admin", password: str = "admin") -> str:
        response = requests.post(f"{self.api_url}/auth/token", json={"username": username, "password": password},
                                 timeout=30)
        response.raise_for_status()
        return response.json()["access_token"]

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    @property
    def audit_record(self) -> Path:
        """Every message of the audit queue behind the bus's rule (`make run`'s audit recorder keeps the queue
        drained into this file)."""
        return self.home / "demobank-events-audit.jsonl"

    def remember_processes(self) -> None:
        """Record every process of this platform (by its DEMOBANK_HOME), to check later that none is left."""
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.environ().get("DEMOBANK_HOME") == str(self.home) or proc.pid == self.process.pid:
                    self.seen_pids.add(proc.pid)
            except psutil.Error:
                continue

    def processes_left(self) -> list[str]:
        left = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    if proc.pid in self.seen_pids:
                        left.append(f"{proc.pid} (defunct) {' '.join(proc.info['cmdline'] or [])[:120]}")
                    continue
                if proc.pid in self.seen_pids or proc.environ().get("DEMOBANK_HOME") == str(self.home):
                    left.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:120]}")
            except psutil.Error:
                continue
        return left

    def interrupt(self, timeout: float = 90) -> int:
        """Press Ctrl-C: SIGINT to the foreground process group (make and the launcher), then wait."""
        self.remember_processes()
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout)


def start_make_run(home: Path, env_overrides: dict[str, str] | None = None) -> LivePlatform:
    api_port, moto_port = free_port(), free_port()
    # The Logic Apps of this platform: a copy of the examples, so that a test can break one without touching the
    # project's files.
    logic_apps = home.parent / f"{home.name}-logic-apps"
    shutil.copytree(PROJECT_DIR / "dags" / "logic_apps", logic_apps, dirs_exist_ok=True)
    env = {
        **os.environ,
        "DEMOBANK_HOME": str(home),
        "DEMOBANK_API_PORT": str(api_port),
        "DEMOBANK_MOTO_PORT": str(moto_port),
        "DEMOBANK_LOGIC_APPS_DIR": str(logic_apps),
        **(env_overrides or {}),
    }
    for name in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER"):
        env.pop(name, None)
    output_path = home.parent / f"{home.name}-make-run.log"
    home.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w") as out:
        process = subprocess.Popen(
            ["make", "run"], cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
    return LivePlatform(process, home, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{moto_port}", output_path)


def wait_until_up(platform: LivePlatform) -> None:
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_TIMEOUT:
        if platform.process.poll() is not None:
            pytest.fail(f"make run exited with {platform.process.returncode}:\n{platform.output()[-5000:]}")
        if "is up (healthy after" in platform.output():
            platform.startup_seconds = time.monotonic() - started
            platform.remember_processes()
            return
        time.sleep(1)
    platform.interrupt()
    pytest.fail(f"make run was not up after {STARTUP_TIMEOUT} s:\n{platform.output()[-5000:]}")


_early: dict[str, LivePlatform] = {}
"""The shared platform when it was started at the end of collection (:func:`start_shared_platform_early`)."""


def start_shared_platform_early() -> None:
    """Start the session's `make run` as soon as the tests are collected, so that it boots (1-2 minutes of mostly
    waiting) while the tests that need no platform run; the e2e tests run last (tests/conftest.py)."""
    if "platform" not in _early:
        _early["platform"] = start_make_run(Path(tempfile.mkdtemp(prefix="demobank-e2e-")) / "airflow-home")


def stop_early_platform() -> None:
    """Stop an early-started platform that no test took (e.g. every e2e test was deselected or the run aborted)."""
    platform = _early.pop("platform", None)
    if platform is not None and platform.process.poll() is None:
        platform.interrupt()


@pytest.fixture(scope="session")
def live_platform(tmp_path_factory) -> Iterator[LivePlatform]:
    """One `make run` for the session's end-to-end tests (started early when possible); stopped with Ctrl-C at
    the end."""
    platform = _early.pop("platform", None)
    if platform is None:
        platform = start_make_run(tmp_path_factory.mktemp("make-run") / "airflow-home")
    try:
        wait_until_up(platform)
        yield platform
    finally:
        if platform.process.poll() is None:
            platform.interrupt()


@pytest.fixture(scope="session")
def api(live_platform: LivePlatform) -> Api:
    """Airflow's REST API, the plugin's API and the sandbox of the live platform, signed in as admin."""
    return Api(live_platform)


@pytest.fixture(scope="session")
def data_factory_runs(api: Api) -> dict[str, str]:
    """Run ids of `data_factory_transactions` for the sample day, the half-malformed day and the never exported day
    (``tests.e2e.data_factory``), triggered once for the session's Data Factory tests and the Data Quality tab."""
    from tests.e2e.data_factory import trigger_data_factory_days

    return trigger_data_factory_days(api)
