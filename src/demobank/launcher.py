"""``make run``: start the suite on this machine, wired to local stand-ins, and stop all of it on Ctrl-C.

What it starts (every port on 127.0.0.1):

* ``airflow standalone`` (SQLite metadata DB, LocalExecutor, API server and UI on ``DEMOBANK_API_PORT``, 8080)
  with the project's ``dags/`` and ``plugins/``; the plugin mounts the vendor sandbox at ``/sandbox`` and the
  suite's authenticated pages at ``/demobank``;
* moto's server (``DEMOBANK_MOTO_PORT``, 5000) standing in for AWS EventBridge and SQS, and the audit queue's
  consumer, :mod:`demobank.standins.audit_recorder`, which keeps the queue drained into
  ``demobank-events-audit.jsonl`` in the home (moto's SQS slows with the queue's length;
  ``DEMOBANK_AUDIT_RECORDER=off`` leaves the queue alone).

Before that it prepares ``AIRFLOW_HOME`` in ``.airflow/`` (``DEMOBANK_HOME`` overrides), sets up the local users
of Airflow's simple auth manager (:func:`users_from_env`: ``admin``/``admin`` with the Admin role,
``operator``/``operator`` with Op, ``viewer``/``viewer`` with Viewer; ``DEMOBANK_USERS`` changes the list,
``DEMOBANK_<NAME>_PASSWORD`` a password), migrates Airflow's metadata DB and the suite's own DB, seeds the demo
data and imports ``airflow_settings.yaml``.

Stopping: Ctrl-C (SIGINT) or SIGTERM stops every process it started, including the ones Airflow moved into
process groups of their own (task processes): the launcher registers itself as the *child subreaper*, so
no descendant can escape to PID 1, and it reaps them all before it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_PR_SET_CHILD_SUBREAPER = 36

#: SQLite connection arguments of Airflow's metadata DB in the embedded shape (read by Airflow through
#: ``[database] sql_alchemy_connect_args``): the API server, scheduler, DAG processor and task processes all write
#: to one file, and sqlite3's default 5 s lock wait made a REST call fail with "Database error" under load.
AIRFLOW_SQLITE_CONNECT_ARGS = {"timeout": 60}


ROLES = ("viewer", "user", "op", "admin")
"""The roles of Airflow's simple auth manager, least to most (what each may do in the suite: README, "Who may do
what")."""

DEFAULT_USERS = "admin:admin,operator:op,viewer:viewer"
"""``make run``'s local users, in the format of Airflow's ``[core] simple_auth_manager_users`` (``name:role,…``)."""

USERS_VARIABLE = "DEMOBANK_USERS"
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


@dataclass(frozen=True)
class LocalUser:
    """One user of ``make run``'s simple auth manager: name, role, password, and the variable that sets it."""

    name: str
    role: str
    password: str
    password_variable: str

    @property
    def default_password(self) -> bool:
        """Whether the password is the documented default (the user's name)."""
        return self.password == self.name


def password_variable(name: str) -> str:
    """The environment variable of a user's password: ``DEMOBANK_<NAME>_PASSWORD`` (upper case; other characters
    than letters and digits become ``_``), e.g. ``DEMOBANK_OPERATOR_PASSWORD``."""
    return f"DEMOBANK_{re.sub(r'[^A-Z0-9]', '_', name.upper())}_PASSWORD"


def users_from_env(env: Mapping[str, str]) -> tuple[LocalUser, ...]:
    """The local users: ``DEMOBANK_USERS`` (default :data:`DEFAULT_USERS`), each password from its
    :func:`password_variable` (default: the user's name).

    :raises ValueError: a malformed list, an unknown role, a name twice, or two names with the same password
        variable; the message names the entry and says what to write.
    """
    listed = env.get(USERS_VARIABLE, "").strip() or DEFAULT_USERS
    how = (f"write {USERS_VARIABLE} as name:role pairs separated by commas, e.g. {DEFAULT_USERS!r}; roles are "
           f"{', '.join(ROLES)}")
    users: list[LocalUser] = []
    for entry in (part.strip() for part in listed.split(",")):
        name, _, role = entry.partition(":")
        name, role = name.strip(), role.strip().lower()
        if not entry or not name or not role or ":" in role:
            raise ValueError(f"{USERS_VARIABLE} entry {entry!r} is not name:role: {how}")
        if not _USER_NAME.match(name):
            raise ValueError(f"{USERS_VARIABLE} user name {name!r} is not allowed: use letters, digits and _ . @ - "
                             "(at most 100, starting with a letter or digit)")
        if role not in ROLES:
            raise ValueError(f"{USERS_VARIABLE} gives user {name!r} the role {role!r}, which Airflow's simple auth "
                             f"manager does not have: use one of {', '.join(ROLES)}")
        variable = password_variable(name)
        clash = next((user for user in users if user.name == name or user.password_variable == variable), None)
        if clash is not None:
            raise ValueError(f"{USERS_VARIABLE} names {name!r} twice" if clash.name == name else
                             f"{USERS_VARIABLE}: users {clash.name!r} and {name!r} would share the password variable "
                             f"{variable}: rename one")
        users.append(LocalUser(name, role, env.get(variable) or name, variable))
    return tuple(users)


def _switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    """An on/off environment variable (on/off, true/false, 1/0, yes/no; unset or empty: ``default``)."""
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"on", "true", "1", "yes"}:
        return True
    if value in {"off", "false", "0", "no"}:
        return False
    raise ValueError(f"{name}={env[name]!r} is neither on nor off: write {name}=on or {name}=off")


@dataclass(frozen=True)
class LaunchConfig:
    """Where everything goes; all of it can be changed through environment variables."""

    project_dir: Path
    home: Path
    api_port: int = 8080
    moto_port: int = 5000
    users: tuple[LocalUser, ...] = field(default_factory=lambda: users_from_env({}))
    health_timeout: float = 300.0
    audit_recorder: bool = True
    """Keep the audit queue drained into :attr:`audit_record_path` (``DEMOBANK_AUDIT_RECORDER=off``: leave it)."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LaunchConfig:
        """Read ``DEMOBANK_PROJECT_DIR``, ``DEMOBANK_HOME``, ``DEMOBANK_API_PORT``, ``DEMOBANK_MOTO_PORT``
        (defaults: the current directory, ``.airflow``, 8080, 5000), ``DEMOBANK_USERS`` and the users' passwords
        (``DEMOBANK_ADMIN_PASSWORD``, ``DEMOBANK_OPERATOR_PASSWORD``, ``DEMOBANK_VIEWER_PASSWORD``, …; see
        :func:`users_from_env`)."""
        env = os.environ if environ is None else environ
        project_dir = Path(env.get("DEMOBANK_PROJECT_DIR", os.getcwd())).resolve()
        if not (project_dir / "dags").is_dir():
            raise FileNotFoundError(
                f"{project_dir} has no dags/ folder: run `make run` from the project's root "
                "(or set DEMOBANK_PROJECT_DIR)"
            )
        return cls(
            project_dir=project_dir,
            home=Path(env.get("DEMOBANK_HOME", project_dir / ".airflow")).resolve(),
            api_port=int(env.get("DEMOBANK_API_PORT", "8080")),
            moto_port=int(env.get("DEMOBANK_MOTO_PORT", "5000")),
            users=users_from_env(env),
            audit_recorder=_switch(env, "DEMOBANK_AUDIT_RECORDER", default=True),
        )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def suite_db_path(self) -> Path:
        return self.home / "demobank.db"

    @property
    def sandbox_db_path(self) -> Path:
        return self.home / "sandbox.db"

    @property
    def core_banking_db_path(self) -> Path:
        return self.home / "core_banking.db"

    @property
    def warehouse_db_path(self) -> Path:
        return self.home / "warehouse.db"

    @property
    def audit_record_path(self) -> Path:
        """Where :mod:`demobank.standins.audit_recorder` writes every message of the audit queue."""
        return self.home / "demobank-events-audit.jsonl"

    @property
    def log_dir(self) -> Path:
        return self.home / "launcher"


def airflow_environment(config: LaunchConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every process of the embedded shape runs with."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(config.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(config.project_dir / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(config.project_dir / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{user.name}:{user.role}" for user in config.users),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(config.api_port),
            "AIRFLOW__API__BASE_URL": config.api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{config.api_url}/execution/",
            # SQLite and 2 cores make the execution API slow while everything starts; its 5 s default timeout
            # then fails a task's first attempt (the client's retry of PATCH /run is refused as a duplicate).
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": env.get("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "30"),
            # A loaded 2-core machine can take over 50 s to parse a DAG file: Airflow's defaults then kill the parse
            # and deactivate the file's DAGs as stale ("Dag ... not found" until the next parse succeeds).
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": env.get("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "150"),
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": env.get(
                "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT", "180"),
            "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": env.get(
                "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD", "180"),
            # The import error of a Logic App definition that was fixed goes at the bundle's next refresh.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": env.get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "30"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "demobank.launcher.AIRFLOW_SQLITE_CONNECT_ARGS",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "demobank.launcher.AIRFLOW_SQLITE_CONNECT_ARGS",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
            # The suite's own configuration, read by airflow_settings.yaml and the plugin.
            "DEMOBANK_PROJECT_DIR": str(config.project_dir),
            "DEMOBANK_HOME": str(config.home),
            "DEMOBANK_DB_PATH": str(config.suite_db_path),
            "DEMOBANK_SANDBOX_ENABLED": "true",
            "DEMOBANK_SANDBOX_DB": str(config.sandbox_db_path),
            "DEMOBANK_SANDBOX_URL": f"{config.api_url}/sandbox",
            # The Data Factory's source and warehouse (SQLite files) and the demo customer API.
            "DEMOBANK_CORE_BANKING_DB": str(config.core_banking_db_path),
            "DEMOBANK_WAREHOUSE_DB": str(config.warehouse_db_path),
            "DEMOBANK_CORE_BANKING_API_URL": f"{config.api_url}/sandbox/core-banking",
            "DEMOBANK_MOTO_URL": config.moto_url,
            "DEMOBANK_AIRFLOW_URL": config.api_url,
        }
    )
    return env


def write_passwords(config: LaunchConfig) -> Path:
    """Fix the local users' passwords before Airflow starts (the simple auth manager reads this file, and generates
    a random password only for a user that it does not list)."""
    path = config.home / "simple_auth_manager_passwords.json.generated"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps({user.name: user.password for user in config.users}), encoding="utf-8")
    return path


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something listens on 127.0.0.1:``port``.

    :raises TimeoutError: after ``timeout`` seconds. :raises RuntimeError: if ``process`` exits first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_is_free(port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before listening")
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def airflow_health(api_url: str) -> dict[str, str]:
    """The status of each component from ``GET /api/v2/monitor/health`` (empty when it does not answer)."""
    try:
        with urllib.request.urlopen(f"{api_url}/api/v2/monitor/health", timeout=5) as response:  # noqa: S310
            body = json.load(response)
    except (OSError, ValueError):
        return {}
    return {name: (part or {}).get("status", "unknown") for name, part in body.items()}


@dataclass
class Launcher:
    """Starts the embedded shape's processes and guarantees that all of them stop."""

    config: LaunchConfig
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _stopping: bool = False

    def log(self, message: str) -> None:
        print(f"[make run] {message}", flush=True)

    def run_step(self, name: str, command: list[str], env: dict[str, str], *, required: bool = True) -> None:
        """Run one preparation command to completion; on failure show its output and stop (``required``) or say
        so and go on."""
        started = time.monotonic()
        log_path = self.config.log_dir / f"{name}.log"
        with log_path.open("wb") as log_file:
            result = subprocess.run(
                command, env=env, cwd=self.config.project_dir, stdout=log_file, stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0 and not required:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
            self.log(f"{name}: exit code {result.returncode}, going on; last lines of {log_path}:\n" + "\n".join(tail))
            return
        if result.returncode != 0:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
            raise RuntimeError(
                f"step '{name}' failed with exit code {result.returncode} ({' '.join(command)}); "
                f"last lines of {log_path}:\n" + "\n".join(tail)
            )
        self.log(f"{name}: done in {time.monotonic() - started:.1f} s")

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start a long-running process in its own session, its output in ``.airflow/launcher/NAME.log``."""
        log_file = (self.config.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command, env=env, cwd=self.config.project_dir, stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log_file.close()
        self.processes[name] = process
        return process

    def prepare(self, env: dict[str, str]) -> None:
        """Everything that must hold before Airflow starts."""
        config = self.config
        for port in (config.api_port, config.moto_port):
            if not port_is_free(port):
                raise RuntimeError(
                    f"127.0.0.1:{port} is already in use: stop what runs there (another `make run`?) "
                    "or choose other ports with DEMOBANK_API_PORT / DEMOBANK_MOTO_PORT"
                )
        config.home.mkdir(parents=True, exist_ok=True)
        config.log_dir.mkdir(parents=True, exist_ok=True)
        write_passwords(config)
        python = sys.executable
        moto = self.start("moto", [python, "-m", "demobank.standins.moto_server", "-H", "127.0.0.1",
                                   "-p", str(config.moto_port)], env)
        self.run_step("airflow-db-migrate", [python, "-m", "airflow", "db", "migrate"], env)
        self.run_step("import-airflow-settings",
                      [python, "-m", "demobank.settings_import", str(config.project_dir / "airflow_settings.yaml")],
                      env)
        # Outside a task, Airflow's SDK does not read connections from the metadata DB: name the file directly.
        db_env = {**env, "DEMOBANK_DB_URL": f"sqlite:///{config.suite_db_path}"}
        self.run_step("suite-db-upgrade", [python, "-m", "demobank.db", "upgrade"], db_env)
        self.run_step("suite-db-seed", [python, "-m", "demobank.db", "seed"], db_env)
        self.run_step("seed-event-targets", [python, "-m", "demobank.events.targets", "import",
                                             str(config.project_dir / "airflow_settings.yaml")], db_env)
        # The Logic Apps of dags/logic_apps: each recorded as a version, and an event trigger's target kept in step.
        # A definition with a problem is not deployed (its problems are printed) and stops nothing else.
        self.run_step("deploy-logic-apps", [python, "-m", "demobank.cli", "workflows", "deploy", "--all",
                                            "--author", "make run"], db_env, required=False)
        # The Data Factory's core banking source: ~300,000 generated transactions (a no-op when already there).
        self.run_step("seed-core-banking", [python, "-m", "demobank.data_factory.core_banking", "seed",
                                            "--url", f"sqlite:///{config.core_banking_db_path}"], env)
        wait_for_port(config.moto_port, 60, moto)
        self.run_step("provision-stand-ins", [python, "-m", "demobank.standins"], env)
        if config.audit_recorder:
            self.start("audit-recorder", [python, "-m", "demobank.standins.audit_recorder",
                                          "--output", str(config.audit_record_path)], env)

    def wait_until_healthy(self) -> float:
        """Wait for every Airflow component to report healthy; return the seconds it took."""
        started = time.monotonic()
        deadline = started + self.config.health_timeout
        while time.monotonic() < deadline:
            self.check_children()
            health = airflow_health(self.config.api_url)
            if health and all(status == "healthy" for status in health.values()):
                return time.monotonic() - started
            time.sleep(1)
        raise TimeoutError(
            f"Airflow was not healthy after {self.config.health_timeout:.0f} s; "
            f"see {self.config.log_dir / 'airflow-standalone.log'}"
        )

    def check_children(self) -> None:
        """Raise when a process the launcher started has died."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited unexpectedly with code {process.returncode}; "
                    f"see {self.config.log_dir / (name + '.log')}"
                )

    def banner(self, seconds: float) -> None:
        config = self.config
        logins = ", ".join(
            f"{user.name} / {user.password if user.default_password else '(' + user.password_variable + ')'} "
            f"({user.role})" for user in config.users)
        lines = [
            "",
            f"Demo Bank Connectivity Suite is up (healthy after {seconds:.0f} s)",
            f"  Airflow UI and REST API   {config.api_url}   logins: {logins}",
            f"  Suite pages (plugin)      {config.api_url}/demobank/   (nav: 'Sandbox outbox')",
            f"  Vendor sandbox            {config.api_url}/sandbox/   (Twilio, SendGrid, Monte Carlo)",
            f"  AWS stand-in (moto)       {config.moto_url}   (EventBridge, SQS)",
            (f"  Audit queue's messages    {config.audit_record_path}   (the queue is kept drained into it)"
             if config.audit_recorder else
             "  Audit queue               not drained (DEMOBANK_AUDIT_RECORDER=off): read it with boto3"),
            f"  Suite database            {config.suite_db_path}",
            f"  AIRFLOW_HOME              {config.home}",
            f"  Process logs              {config.log_dir}/",
            "Press Ctrl-C to stop everything.",
            "",
        ]
        print("\n".join(lines), flush=True)

    def stop(self) -> None:
        """Stop every process started, then any descendant left; reap them all."""
        if self._stopping:
            return
        self._stopping = True
        self.log("stopping…")
        me = psutil.Process()
        for name, process in self.processes.items():
            if process.poll() is None:
                # airflow standalone shuts its components down on SIGINT (KeyboardInterrupt).
                sig = signal.SIGINT if name == "airflow-standalone" else signal.SIGTERM
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(p.poll() is None for p in self.processes.values()):
            time.sleep(0.2)
        leftovers = me.children(recursive=True)
        for child in leftovers:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=10)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=5)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        reap_zombies()
        self.log("stopped: no process left")

    def serve(self) -> int:
        """The whole ``make run``: prepare, start, wait for health, run until a signal."""
        become_subreaper()
        env = airflow_environment(self.config)
        stop_requested: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            stop_requested.append(signum)
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            started = time.monotonic()
            self.prepare(env)
            self.start("airflow-standalone", [sys.executable, "-m", "airflow", "standalone"], env)
            self.log(f"airflow standalone starting (logs: {self.config.log_dir / 'airflow-standalone.log'})")
            self.wait_until_healthy()
            self.banner(time.monotonic() - started)
            while True:
                self.check_children()
                reap_zombies(keep={process.pid for process in self.processes.values()})
                time.sleep(1)
        except KeyboardInterrupt:
            return 0
        except (RuntimeError, TimeoutError, OSError) as error:
            print(f"[make run] error: {error}", file=sys.stderr, flush=True)
            return 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.stop()


def become_subreaper() -> None:
    """Make orphaned descendants re-parent to this process instead of PID 1 (Linux only)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_zombies(keep: set[int] | None = None) -> None:
    """Collect the exit status of finished descendants so none stays defunct.

    :param keep: PIDs whose status their ``Popen`` object collects itself.
    """
    for child in psutil.Process().children():
        if keep and child.pid in keep:
            continue
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)


def main() -> int:
    try:
        config = LaunchConfig.from_env()
    except (FileNotFoundError, ValueError) as error:
        print(f"[make run] error: {error}", file=sys.stderr)
        return 2
    return Launcher(config).serve()


if __name__ == "__main__":
    raise SystemExit(main())
