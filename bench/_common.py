"""Shared helpers of the benchmarks in ``bench/`` (not tests: they print a table and refresh BENCHMARKS.md).

* :class:`SandboxProcess` runs ``python -m demobank.sandbox`` in a separate process (its own GIL), on a free
  port, and drives its admin routes (faults, recorded messages).
* :class:`HttpRequestLog` counts the HTTP requests this process makes, at ``http.client`` (under both
  ``requests``/``urllib3``, which the Twilio SDK uses, and ``urllib``, which SendGrid's uses), so a request count
  does not depend on the code being measured.
* :func:`write_section` replaces one benchmark's section of ``BENCHMARKS.md`` and leaves the others alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = PROJECT_DIR / "BENCHMARKS.md"

_HEADER = """# Benchmarks

Benchmarks are not tests: they measure, print a table and refresh their own section below; no test asserts a
timing. `make bench` runs every `bench/*.py` (all of them; it fails at the end if one missed a target). Machines are
noisy, so each section reports medians of repeated runs and ratios measured in the same run, with the machine
and the date.
"""


# -- the sandbox in its own process ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxProcess:
    """``python -m demobank.sandbox`` in a child process (and its own process group), on a free port.

    :param workdir: where the sandbox's SQLite file and its log go.
    :param workers: uvicorn worker processes.
    """

    def __init__(self, workdir: Path, *, workers: int = 1) -> None:
        self.workdir = workdir
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / "sandbox.db"
        self.log_path = workdir / "sandbox.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._session: Any = None

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        import requests

        command = [sys.executable, "-m", "demobank.sandbox", "--host", "127.0.0.1", "--port", str(self.port),
                   "--db", str(self.db_path), "--workers", str(self.workers), "--log-level", "warning"]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_DIR,
                                          start_new_session=True)
        self._session = requests.Session()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the sandbox exited with {self._proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            with contextlib.suppress(requests.RequestException):
                if self._session.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox did not answer /health within {timeout}s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the sandbox's process group (only the processes this object started)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._session is not None:
            self._session.close()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    # admin routes (not counted: HttpRequestLog only records inside a window, and these run outside them)

    def set_faults(self, **config: Any) -> None:
        self._session.put(f"{self.url}/faults", json=config, timeout=30).raise_for_status()

    def reset(self) -> None:
        """No faults, no recorded messages."""
        self._session.delete(f"{self.url}/faults", timeout=30).raise_for_status()
        self._session.delete(f"{self.url}/messages", timeout=60).raise_for_status()

    def messages(self, channel: str, limit: int = 10_000) -> list[dict[str, Any]]:
        response = self._session.get(f"{self.url}/messages", params={"channel": channel, "limit": limit},
                                     timeout=120)
        response.raise_for_status()
        return list(response.json()["messages"])


# -- counting HTTP requests ------------------------------------------------------------------------------


@dataclass
class RequestWindow:
    """The requests sent to one port while a window was open: ``(monotonic time, method, path)``."""

    port: int
    requests: list[tuple[float, str, str]] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def busiest_second(self) -> int:
        """The most requests that started within any 1-second interval."""
        return busiest_window([t for t, _, _ in self.requests], 1.0)


class HttpRequestLog:
    """Records every HTTP request of this process (any thread) to one port, while a window is open."""

    _lock = threading.Lock()
    _installed = False
    _windows: list[RequestWindow] = []  # process-wide on purpose

    @classmethod
    def install(cls) -> None:
        with cls._lock:
            if cls._installed:
                return
            original = http.client.HTTPConnection.putrequest

            def putrequest(conn: http.client.HTTPConnection, method: str, url: str, *args: Any,
                           **kwargs: Any) -> Any:
                now = time.monotonic()
                for window in cls._windows:
                    if conn.port == window.port:
                        window.requests.append((now, method, url))  # list.append is atomic under the GIL
                return original(conn, method, url, *args, **kwargs)

            http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]
            cls._installed = True

    @classmethod
    @contextlib.contextmanager
    def window(cls, port: int) -> Iterator[RequestWindow]:
        cls.install()
        window = RequestWindow(port)
        with cls._lock:
            cls._windows.append(window)
        window.started = time.perf_counter()
        try:
            yield window
        finally:
            window.ended = time.perf_counter()
            with cls._lock:
                cls._windows.remove(window)


# -- numbers and reports ---------------------------------------------------------------------------------


def busiest_window(times: Sequence[float], width: float) -> int:
    """The largest number of ``times`` inside any half-open interval ``[t, t + width)``."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float], digits: int = 1) -> str:
    """``median (min-max)``, or just the value for one run."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """One line: CPUs, Python, OS, and the date."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()} {platform.machine()}; run {now}")


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section of benchmark ``name`` in BENCHMARKS.md; other sections are kept."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else _HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        tail = tail.lstrip("\n")
        text = head + block + ("\n" + tail if tail.strip() else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def progress(message: str) -> None:
    """A timestamped progress line on stderr (stdout carries the report)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def finish(name: str, report: str, missed: Sequence[str], *, write: bool, started: float) -> int:
    """The end every benchmark shares: print the report, refresh its BENCHMARKS.md section if asked, name each
    missed target on stderr; the exit status is 1 when a target was missed."""
    print(report)
    if write:
        write_section(name, report)  # reads BENCHMARKS.md at this moment and replaces only this section
        progress(f"BENCHMARKS.md: section {name!r} refreshed")
    progress(f"done in {time.monotonic() - started:.0f} s")
    for line in missed:
        print(f"TARGET MISSED: {line}", file=sys.stderr)
    return 1 if missed else 0
