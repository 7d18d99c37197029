"""The live-platform part of ``bench/events_publish.py``: what a user of ``make run`` gets.

* :class:`LivePlatform` starts ``make run``'s launcher (``python -m demobank.launcher``) in a temporary home on free
  ports, signs in as ``admin`` and stops everything with Ctrl-C (SIGINT) at the end.
* :func:`run_live` publishes events through ``POST /demobank/api/v1/events`` (batches of 500, one after the other,
  as a client would) and waits until every one of them has arrived in the audit queue behind the bus's rule (``make
  run``'s audit recorder drains the queue into ``demobank-events-audit.jsonl``), timing each part.
* :func:`run_bare_attached` is the bare loop on the same stand-in: one boto3 client sending 10-entry ``PutEvents``
  calls to the platform's moto, the entries built beforehand, until every event has arrived the same way.
* :func:`moto_growth` measures moto's cost per 10-entry ``PutEvents`` while the rule's queue fills, for plain
  ``moto_server`` and for the suite's patched stand-in (:mod:`demobank.standins.moto_server`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
from _common import PROJECT_DIR, free_port, median

REGION = "us-east-1"
API_BATCH = 500  # the REST API's batch limit is what a client sends at once
STARTUP_TIMEOUT = 300.0
ARRIVAL_TIMEOUT = 600.0


@dataclass
class LiveRun:
    """One measured publication through the live platform (or the bare loop on its stand-in)."""

    approach: str
    events: int
    wall: float  # first request sent -> last event recorded from the audit queue
    sent_seconds: float  # first request sent -> last request answered
    first_arrival: float  # first request sent -> first event recorded
    arrived: int
    duplicates: int
    cpu: dict[str, float] = field(default_factory=dict)  # process group -> CPU seconds during the run
    dispatch: dict[str, Any] = field(default_factory=dict)  # ours: events_dispatch runs and task times
    problems: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.events / self.wall


class LivePlatform:
    """``make run``'s launcher on free ports in a temporary home; ``stop()`` presses Ctrl-C."""

    def __init__(self, workdir: Path) -> None:
        self.home = workdir / "airflow-home"
        self.api_port, self.moto_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.moto_url = f"http://127.0.0.1:{self.moto_port}"
        self.output = workdir / "make-run.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()

    @property
    def record_path(self) -> Path:
        return self.home / "demobank-events-audit.jsonl"

    def start(self) -> float:
        """Start and wait until the launcher says it is up; return the seconds it took."""
        env = {**os.environ, "DEMOBANK_HOME": str(self.home), "DEMOBANK_API_PORT": str(self.api_port),
               "DEMOBANK_MOTO_PORT": str(self.moto_port), "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
        for name in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER",
                     "AIRFLOW_CONN_AWS_DEFAULT", "AWS_ENDPOINT_URL"):
            env.pop(name, None)
        started = time.monotonic()
        with self.output.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "demobank.launcher"], cwd=PROJECT_DIR, env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while "is up (healthy after" not in self.output.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() - started > STARTUP_TIMEOUT:
                tail = self.output.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"make run did not come up:\n{tail}")
            time.sleep(1)
        token = self.session.post(f"{self.api_url}/auth/token", json={"username": "admin", "password": "admin"},
                                  timeout=60).json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"
        return time.monotonic() - started

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    # what the platform is doing

    def processes(self) -> dict[str, list[psutil.Process]]:
        """The platform's processes by part: moto, the audit recorder, Airflow (everything else)."""
        parts: dict[str, list[psutil.Process]] = {"moto": [], "recorder": [], "airflow": []}
        if self.process is None:
            return parts
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                command = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "demobank.standins.moto_server" in command:
                parts["moto"].append(child)
            elif "demobank.standins.audit_recorder" in command:
                parts["recorder"].append(child)
            else:
                parts["airflow"].append(child)
        return parts

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far per part (Airflow's: only processes alive now, which undercounts finished tasks)."""
        totals = {}
        for part, processes in self.processes().items():
            total = 0.0
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system + times.children_user + times.children_system
            totals[part] = total
        return totals

    def suite_db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.home / 'demobank.db'}?mode=ro", uri=True, timeout=60)

    def pending(self) -> int:
        with contextlib.closing(self.suite_db()) as db:
            return db.execute("SELECT count(*) FROM event_deliveries WHERE status = 'pending'").fetchone()[0]

    def dispatch_runs(self, since: str) -> list[dict[str, Any]]:
        response = self.session.get(f"{self.api_url}/api/v2/dags/events_dispatch/dagRuns",
                                    params={"run_after_gte": since, "limit": 100, "order_by": "run_after"},
                                    timeout=60)
        response.raise_for_status()
        return response.json()["dag_runs"]

    def wait_until_idle(self, timeout: float = 600.0) -> None:
        """Until nothing is pending and no events_dispatch run is active (what the platform does on its own at
        start: yesterday's load and its events)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = self.session.get(f"{self.api_url}/api/v2/dags/~/dagRuns",
                                      params={"state": ["queued", "running"], "limit": 1}, timeout=60).json()
            if not self.pending() and not active["total_entries"]:
                return
            time.sleep(2)
        raise RuntimeError(f"the platform did not become idle within {timeout:.0f} s")


class RecordWatch:
    """Waits for event ids in the audit recorder's file, from its current end on."""

    def __init__(self, path: Path) -> None:
        from demobank.standins.audit_recorder import RecordReader

        self.reader = RecordReader(path)
        self.reader.offset = path.stat().st_size if path.exists() else 0

    def wait_for(self, wanted: set[str], started: float, timeout: float = ARRIVAL_TIMEOUT
                 ) -> tuple[float, float, int, int]:
        """(seconds from ``started`` to the first and to the last wanted arrival, distinct ids, duplicates)."""
        seen: dict[str, int] = {}
        first = last = float("nan")
        deadline = time.perf_counter() + timeout
        while len(seen) < len(wanted) and time.perf_counter() < deadline:
            lines = self.reader.read_new()
            now = time.perf_counter()
            for line in lines:
                if line.get("event_id") in wanted:
                    seen[line["event_id"]] = seen.get(line["event_id"], 0) + 1
                    if first != first:  # nan: the first one
                        first = now - started
                    last = now - started
            if not lines:
                time.sleep(0.05)
        return first, last, len(seen), sum(seen.values()) - len(seen)


def unique_inputs(count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` ``transaction.created`` inputs with transaction ids unique to this run (``tag``)."""
    from demobank.events.catalog import examples

    template = examples("transaction.created")[0]
    return [{"type": "transaction.created", "data": dict(template, transaction_id=f"TXN-{tag}{n:07d}")}
            for n in range(count)]


def run_live(platform: LivePlatform, count: int) -> LiveRun:
    """REST publish of ``count`` events (batches of 500, one after the other) until all are in the record."""
    inputs = unique_inputs(count, uuid.uuid4().hex[:6].upper())
    watch = RecordWatch(platform.record_path)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    cpu_before = platform.cpu_seconds()
    ids: list[str] = []
    problems: list[str] = []
    started = time.perf_counter()
    for first in range(0, count, API_BATCH):
        response = platform.session.post(f"{platform.api_url}/demobank/api/v1/events",
                                         json={"events": inputs[first:first + API_BATCH]}, timeout=300)
        if response.status_code != 201:
            problems.append(f"POST /events: {response.status_code} {response.text[:300]}")
            break
        ids += response.json()["ids"]
    sent = time.perf_counter() - started
    first_arrival, wall, arrived, duplicates = watch.wait_for(set(ids), started)
    cpu = {part: seconds - cpu_before.get(part, 0.0) for part, seconds in platform.cpu_seconds().items()}
    if arrived < count:
        problems.append(f"live: {count - arrived} of {count} events did not arrive within {ARRIVAL_TIMEOUT:.0f} s")
    platform.wait_until_idle()  # untimed: the dispatch run records its end
    return LiveRun("live", count, wall, sent, first_arrival, arrived, duplicates, cpu,
                   dispatch=_dispatch_summary(platform, since), problems=problems)


def _dispatch_summary(platform: LivePlatform, since: str) -> dict[str, Any]:
    """The events_dispatch runs since ``since``: how many, and the first one's scheduling delay and duration."""
    from datetime import datetime

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    runs = [run for run in platform.dispatch_runs(since) if run.get("start_date")]
    if not runs:
        return {"runs": 0}
    first = runs[0]
    queued, start, end = when(first.get("queued_at")), when(first["start_date"]), when(first.get("end_date"))
    return {"runs": len(runs), "asset_triggered": sum(run["run_type"] == "asset_triggered" for run in runs),
            "first_queued_to_start": (start - queued).total_seconds() if queued and start else None,
            "first_duration": (end - start).total_seconds() if end and start else None}


def run_bare_attached(platform: LivePlatform, count: int) -> LiveRun:
    """One boto3 client, 10-entry ``PutEvents`` to the platform's moto, until all events are in the record."""
    import boto3

    from demobank.events.eventbridge import entry_for
    from demobank.events.outbox import prepare_event
    from demobank.standins import EVENT_BUS_NAME

    inputs = unique_inputs(count, "B" + uuid.uuid4().hex[:5].upper())
    envelopes = [json.loads(prepare_event(item["type"], item["data"], publisher="dag:bench_bare").to_json())
                 for item in inputs]
    entries = [entry_for(envelope, EVENT_BUS_NAME) for envelope in envelopes]
    client = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                   region_name=REGION).client("events", endpoint_url=platform.moto_url)
    client.put_events(Entries=[dict(entries[0], Detail=json.dumps({"warm": True}))])  # first connection
    watch = RecordWatch(platform.record_path)
    cpu_before = platform.cpu_seconds()
    problems = []
    started = time.perf_counter()
    for first in range(0, count, 10):
        response = client.put_events(Entries=entries[first:first + 10])
        if response.get("FailedEntryCount"):
            problems.append(f"bare: {response['FailedEntryCount']} entries refused")
    sent = time.perf_counter() - started
    first_arrival, wall, arrived, duplicates = watch.wait_for({envelope["id"] for envelope in envelopes}, started)
    cpu = {part: seconds - cpu_before.get(part, 0.0) for part, seconds in platform.cpu_seconds().items()}
    if arrived < count:
        problems.append(f"bare: {count - arrived} of {count} events did not arrive within {ARRIVAL_TIMEOUT:.0f} s")
    return LiveRun("bare", count, wall, sent, first_arrival, arrived, duplicates, cpu, problems=problems)


# -- moto's cost as the queue grows ----------------------------------------------------------------------


@dataclass
class GrowthRow:
    server: str
    bins: dict[str, float]  # queue length range -> median ms per 10-entry PutEvents


GROWTH_BINS = ((0, 500), (500, 1_000), (1_000, 1_500), (1_500, 2_000))


@contextlib.contextmanager
def _moto(command: Sequence[str], workdir: Path) -> Iterator[str]:
    port = free_port()
    log = (workdir / f"moto-{port}.log").open("wb")
    process = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{command} did not listen")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def moto_growth(entries: Sequence[Mapping[str, Any]]) -> list[GrowthRow]:
    """ms per 10-entry ``PutEvents`` with the rule's queue attached and never drained, by queue length."""
    import boto3

    from demobank.standins import provision_aws

    servers = {
        "plain `moto_server` 5.2.5": [str(Path(sys.executable).parent / "moto_server")],
        "the suite's stand-in (`demobank.standins.moto_server`)": [sys.executable, "-m",
                                                                   "demobank.standins.moto_server"],
    }
    total = GROWTH_BINS[-1][1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-moto-") as tmp:
        for label, command in servers.items():
            with _moto(command, Path(tmp)) as url:
                os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
                os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
                provision_aws(url, region=REGION)
                client = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                               region_name=REGION).client("events", endpoint_url=url)
                times: list[tuple[int, float]] = []
                for first in range(0, total, 10):
                    batch = [dict(entry) for entry in entries[first % len(entries):first % len(entries) + 10]]
                    started = time.perf_counter()
                    client.put_events(Entries=batch)
                    times.append((first, (time.perf_counter() - started) * 1000))
                rows.append(GrowthRow(label, {
                    f"{low:,}-{high:,}": median([ms for queued, ms in times if low <= queued < high])
                    for low, high in GROWTH_BINS}))
    return rows


# -- a business day through the Data Factory -------------------------------------------------------------


@dataclass
class DayRun:
    """The Data Factory's load of one day in the live platform and what its events did afterwards."""

    day: str
    events: int
    load_seconds: float  # the data_factory_transactions run, queued -> end
    arrived: int
    duplicates: int
    last_arrival_after_load: float  # the run's end -> the last of its events in the queue
    first_arrival_after_start: float  # the run's start -> the first of its events in the queue
    dispatch: list[dict[str, Any]] = field(default_factory=list)  # each events_dispatch run: rounds, claimed, secs
    problems: list[str] = field(default_factory=list)


def run_day(platform: LivePlatform, day: str) -> DayRun:
    """Trigger ``data_factory_transactions`` for ``day``; wait for its events in the audit queue; read back what
    each ``events_dispatch`` run did (its XCom: rounds and deliveries) and how long it ran."""
    from datetime import datetime

    def when(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    watch = RecordWatch(platform.record_path)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    run_id = f"bench__{uuid.uuid4().hex}"
    response = platform.session.post(f"{platform.api_url}/api/v2/dags/data_factory_transactions/dagRuns",
                                     json={"dag_run_id": run_id, "logical_date": None, "conf": {"date": day}},
                                     timeout=120)
    response.raise_for_status()
    started = time.perf_counter()
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = platform.session.get(f"{platform.api_url}/api/v2/dags/data_factory_transactions/dagRuns/{run_id}",
                                   timeout=60).json()
        if run["state"] in ("success", "failed"):
            break
        time.sleep(1)
    problems = [] if run.get("state") == "success" else [f"day {day}: the load ended {run.get('state')}"]
    with contextlib.closing(platform.suite_db()) as db:
        wanted = {row[0] for row in db.execute(
            "SELECT id FROM outbox_events WHERE publisher = 'dag:data_factory_transactions' AND idempotency_key "
            "LIKE ?", (f"TXN-{day.replace('-', '')}%",))}
    first, last, arrived, duplicates = watch.wait_for(wanted, started)
    load_end = when(run["end_date"]).timestamp()
    load_start = when(run["start_date"]).timestamp()
    # watch times count from `started` (perf_counter): convert through the wall clock at `started`
    wall_at_started = time.time() - (time.perf_counter() - started)
    if arrived < len(wanted):
        problems.append(f"day {day}: {len(wanted) - arrived} of {len(wanted)} events did not arrive")
    platform.wait_until_idle()
    dispatch = []
    for dispatch_run in platform.dispatch_runs(since):
        if not dispatch_run.get("start_date") or not dispatch_run.get("end_date"):
            continue
        xcom = platform.session.get(
            f"{platform.api_url}/api/v2/dags/events_dispatch/dagRuns/{dispatch_run['dag_run_id']}/taskInstances/"
            "dispatch/xcomEntries/return_value", timeout=60)
        value = xcom.json().get("value") if xcom.status_code == 200 else None
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        summary = value if isinstance(value, dict) else {}
        if not summary.get("claimed"):
            continue
        dispatch.append({"run_type": dispatch_run["run_type"], "rounds": summary.get("rounds"),
                         "claimed": summary.get("claimed"), "delivered": summary.get("delivered"),
                         "seconds": (when(dispatch_run["end_date"]) - when(dispatch_run["start_date"])
                                     ).total_seconds()})
    return DayRun(day, len(wanted), load_end - load_start, arrived, duplicates,
                  wall_at_started + last - load_end, wall_at_started + first - load_start, dispatch, problems)
