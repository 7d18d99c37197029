"""``python -m demobank.compose_init``: the ``airflow-init`` service of docker-compose.yaml.

It runs on every ``docker compose up``, before every other Airflow service, and destroys nothing. Its steps, each
one a command of the suite run in this one process (as separate processes each would pay Airflow's import again):

1. checks its input: the demo switches, the admin's password, the Fernet key;
2. migrates Airflow's metadata database (``airflow db migrate``);
3. creates the suite's database if missing and migrates it (``python -m demobank.db upgrade --create-database``);
4. creates the warehouse database if missing and its missing tables (``python -m demobank.data_factory.warehouse
   init --create-database``);
5. creates the missing pools and variables of ``airflow_settings.yaml`` and, in demo mode only, its missing
   connections (they point at the local stand-ins); existing ones are kept as they are, edited in the UI or not
   (``python -m demobank.settings_import``, never with ``--overwrite``);
6. creates the missing event targets of the file, keeping existing ones (``python -m demobank.events.targets
   import``);
7. writes the admin's password (``DEMOBANK_ADMIN_PASSWORD``) for Airflow's simple auth manager;
8. demo seeding only: creates the demo bus on moto (``python -m demobank.standins``), seeds the core banking source
   and the demo customers. Each seed writes only into a database that it created and refuses any other, naming it
   and the tables found (see :mod:`demobank.db.seed_marker`): then this command fails and nothing was dropped.

Its input is the environment that docker-compose.yaml gives the service: the database connections
(``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``, ``AIRFLOW_CONN_DEMOBANK_DB``, ``AIRFLOW_CONN_CORE_BANKING``,
``AIRFLOW_CONN_WAREHOUSE``), ``AIRFLOW__CORE__FERNET_KEY``, ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE``,
``DEMOBANK_ADMIN_PASSWORD``, ``DEMOBANK_SANDBOX_ENABLED`` (the API server mounts the sandbox: create the file's
connections), ``DEMOBANK_SEED_DEMO_DATA``, ``DEMOBANK_SANDBOX_URL`` and ``DEMOBANK_MOTO_URL``. The settings file is
``airflow_settings.yaml`` in the working directory (``DEMOBANK_SETTINGS_FILE`` overrides). tests/test_compose_init.py
runs this command with that environment, the databases moved to a local server.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from demobank.exceptions import ConfigurationError

ADMIN_USER = "admin"
"""The user of ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`` in docker-compose.yaml."""

FERNET_KEY_HINT = (
    "generate one with python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' "
    "(scripts/compose-env.sh writes one into .env)"
)


@dataclass(frozen=True)
class InitSettings:
    """What the init service was asked to do, read from its environment."""

    sandbox_enabled: bool
    seed_demo_data: bool
    admin_password: str
    passwords_file: Path
    settings_file: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InitSettings:
        """Read and check the environment.

        :raises ConfigurationError: naming the variable, its value and what to set.
        """
        env = os.environ if environ is None else environ
        missing = [name for name in ("DEMOBANK_ADMIN_PASSWORD", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
                   if not env.get(name)]
        if missing:
            raise ConfigurationError(f"{' and '.join(missing)} not set: docker-compose.yaml sets them "
                                     "(DEMOBANK_ADMIN_PASSWORD from .env: run scripts/compose-env.sh)")
        _check_fernet_key(env.get("AIRFLOW__CORE__FERNET_KEY", ""))
        return cls(
            sandbox_enabled=_switch(env, "DEMOBANK_SANDBOX_ENABLED"),
            seed_demo_data=_switch(env, "DEMOBANK_SEED_DEMO_DATA"),
            admin_password=env["DEMOBANK_ADMIN_PASSWORD"],
            passwords_file=Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]),
            settings_file=env.get("DEMOBANK_SETTINGS_FILE") or "airflow_settings.yaml",
        )


def _switch(env: Mapping[str, str], name: str) -> bool:
    """A switch of the init: exactly ``true`` or ``false`` (unset: false); anything else is a mistake, not "off"."""
    value = env.get(name, "false")
    if value not in ("true", "false"):
        raise ConfigurationError(
            f"{name} must be true or false, got {value!r} (docker-compose.yaml sets it from DEMOBANK_DEMO_MODE)"
        )
    return value == "true"


def _check_fernet_key(key: str) -> None:
    from cryptography.fernet import Fernet

    try:
        Fernet(key)
    except ValueError as error:
        raise ConfigurationError(
            f"AIRFLOW__CORE__FERNET_KEY (AIRFLOW_FERNET_KEY in .env) is not a Fernet key ({error}): {FERNET_KEY_HINT}"
        ) from error


def write_admin_password(settings: InitSettings) -> int:
    """Write the admin's password for the simple auth manager (readable by its owner only)."""
    path = settings.passwords_file
    path.write_text(json.dumps({ADMIN_USER: settings.admin_password}), encoding="utf-8")
    path.chmod(0o600)
    print(f"password of {ADMIN_USER!r} written to {path}")
    return 0


def migrate_airflow() -> int:
    """``airflow db migrate`` (a process of its own, as Airflow's CLI sets itself up)."""
    return subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=False).returncode


@dataclass(frozen=True)
class Step:
    """One step: a title for the log and the command's entry point with its arguments."""

    title: str
    run: Callable[[], int]


def _cli(module: str, *args: str) -> Callable[[], int]:
    """The ``main`` of a command module, imported when the step runs (a step that does not run costs nothing)."""
    return lambda: importlib.import_module(module).main(list(args))


def plan(settings: InitSettings) -> list[Step]:
    """The steps for these settings, in order."""
    file = settings.settings_file
    steps = [
        Step("Airflow metadata database", migrate_airflow),
        Step("Demo Bank database (created if missing, then migrated)",
             _cli("demobank.db.__main__", "upgrade", "--create-database")),
        Step("Data warehouse (created if missing; missing tables only)",
             _cli("demobank.data_factory.warehouse", "init", "--create-database")),
    ]
    if settings.sandbox_enabled:
        steps.append(Step("Pools, variables and connections (missing ones only; the connections point at the "
                          "stand-ins)", _cli("demobank.settings_import", file)))
    else:
        steps.append(Step("Pools and variables (missing ones only; no connections outside demo mode: create the "
                          "vendor connections yourself)", _cli("demobank.settings_import", file, "--no-connections")))
    steps += [
        Step("Event targets (missing ones only)", _cli("demobank.events.targets", "import", file)),
        Step("Admin login", lambda: write_admin_password(settings)),
    ]
    if settings.seed_demo_data:
        steps += [
            Step("Demo bus on moto", lambda: importlib.import_module("demobank.standins").main()),
            Step("Core banking source (demo seeding; refuses a database that the generator did not create)",
                 _cli("demobank.data_factory.core_banking", "seed", "--create-database")),
            Step("Demo customers (demo seeding; refuses a database that is not the suite's)",
                 _cli("demobank.db.__main__", "seed")),
        ]
    return steps


def run(steps: Sequence[Step]) -> int:
    """Run the steps in order; stop at the first that fails, saying which."""
    for step in steps:
        print(f"== {step.title}", flush=True)
        status = 1
        try:
            status = step.run()
        finally:
            sys.stdout.flush()
            if status != 0:
                print(f"compose-init: FAILED at step {step.title!r} (exit status {status}); the steps after it did "
                      "not run; see the error above", file=sys.stderr, flush=True)
        if status != 0:
            return status
    print("compose-init: done", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m demobank.compose_init``: exit 0 when every step succeeded, 2 for bad input, else the failed
    step's status."""
    if argv:
        print(f"error: python -m demobank.compose_init takes no arguments (got {list(argv)}); it reads its "
              "environment, see its docstring", file=sys.stderr)
        return 2
    try:
        settings = InitSettings.from_env()
    except ConfigurationError as error:
        print(f"compose-init: error: {error}", file=sys.stderr)
        return 2
    print(f"compose-init: demo mode: sandbox {str(settings.sandbox_enabled).lower()}, "
          f"seeding {str(settings.seed_demo_data).lower()}", flush=True)
    return run(plan(settings))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
