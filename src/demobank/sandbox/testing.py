"""Run the sandbox in a background thread for tests and benchmarks.

::

    from demobank.sandbox.testing import running_sandbox

    def test_something(tmp_path):
        with running_sandbox(tmp_path) as base_url:
            ...  # base_url == "http://127.0.0.1:<free port>"
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from demobank.sandbox.app import create_app
from demobank.sandbox.settings import SandboxSettings

DB_FILENAME = "sandbox.db"


def sandbox_db_path(path: str | os.PathLike[str]) -> Path:
    """Resolve where :func:`running_sandbox` records: ``path/sandbox.db`` for a directory, else ``path``.

    :param path: a directory (e.g. pytest's ``tmp_path``) or a file path.
    :return: the SQLite file.
    """
    p = Path(path)
    return p / DB_FILENAME if p.is_dir() else p


@contextlib.contextmanager
def serving(app: Any, *, startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve any ASGI app on a free 127.0.0.1 port in a background thread.

    Useful to reproduce how Airflow mounts the sandbox (e.g. a parent app with ``/sandbox`` and ``/airflow``).

    :param app: the ASGI app.
    :param startup_timeout: seconds to wait for the server to accept connections.
    :return: a context manager yielding the base URL, ``http://127.0.0.1:PORT`` (no trailing slash).
    :raises RuntimeError: if the server does not start in time.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            sock.close()
            raise RuntimeError(
                f"The sandbox did not start on 127.0.0.1:{port} within {startup_timeout}s; "
                "look for a uvicorn error above."
            )
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=0.5)
        if thread.is_alive():  # idle keep-alive connections of SDK clients would hold a graceful shutdown
            server.force_exit = True
            thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def running_sandbox(
    path: str | os.PathLike[str],
    *,
    settings: SandboxSettings | None = None,
    startup_timeout: float = 10.0,
    **overrides: Any,
) -> Iterator[str]:
    """Serve the sandbox app at the root of a free 127.0.0.1 port in a background thread.

    The environment is not read: the sandbox uses the documented default credentials unless ``settings`` or
    ``overrides`` say otherwise.

    :param path: a directory (the file is ``path/sandbox.db``) or the SQLite file itself.
    :param settings: full settings (their ``db_path`` is replaced by the one derived from ``path``).
    :param startup_timeout: seconds to wait for the server to accept connections.
    :param overrides: fields of :class:`SandboxSettings` to change, e.g. ``sendgrid_max_body_bytes=1024``.
    :return: a context manager yielding the base URL, ``http://127.0.0.1:PORT`` (no trailing slash).
    :raises RuntimeError: if the server does not start in time.
    """
    base = settings or SandboxSettings()
    effective = base.with_overrides(db_path=sandbox_db_path(path), **overrides)
    with serving(create_app(effective), startup_timeout=startup_timeout) as base_url:
        yield base_url
