"""Durable record of what the sandbox accepted, in one SQLite file shared by every worker process.

The file is the only source of truth: the sandbox may run inside several API-server worker processes at once,
so nothing is kept in process memory except the open connections. Connections are opened once per thread and
process (WAL journal, busy timeout) and the schema is created once per process, never per request.

The suite's UI reads the same data through :class:`SandboxStore` directly::

    from demobank.sandbox.store import SandboxStore

    store = SandboxStore("/path/to/sandbox.db")
    store.list_messages("sms", limit=20)
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from demobank.sandbox.faults import CHANNELS, NO_FAULTS, FaultConfig
from demobank.sandbox.settings import SandboxSettings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sms_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sid TEXT NOT NULL UNIQUE,
    account_sid TEXT NOT NULL,
    to_number TEXT NOT NULL,
    from_number TEXT,
    messaging_service_sid TEXT,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    num_segments INTEGER NOT NULL,
    created_at REAL NOT NULL,
    resource TEXT NOT NULL
);
-- Twilio's list filter (To, newest first): SQLite appends the rowid (= id), so this index also serves
-- "WHERE to_number = ? [AND id < ?] ORDER BY id DESC" without a sort. IF NOT EXISTS: older files gain it.
CREATE INDEX IF NOT EXISTS sms_messages_to ON sms_messages (to_number);
CREATE TABLE IF NOT EXISTS email_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    from_email TEXT NOT NULL,
    subject TEXT,
    recipients TEXT NOT NULL,
    created_at REAL NOT NULL,
    request TEXT NOT NULL
);
-- Lookup terms of recorded sends for SendGrid's Email Activity route: "to:<address lower-cased>" per
-- recipient and "arg:[key,value]" per string custom_args pair (message and personalization level). Filled
-- lazily by the first lookup after new sends (email_messages ids up to indexed_upto are covered), so the mail
-- send path pays nothing; files written before these tables existed are caught up the same way.
CREATE TABLE IF NOT EXISTS email_search (
    term TEXT NOT NULL,
    email_id INTEGER NOT NULL,
    PRIMARY KEY (term, email_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS email_search_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS montecarlo_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    operation TEXT,
    created_at REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    config TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

_TABLES: dict[str, str] = {
    "sms": "sms_messages",
    "email": "email_messages",
    "montecarlo": "montecarlo_calls",
}
MAX_LIMIT = 10_000
#: Sends indexed per write transaction when :meth:`SandboxStore.index_emails` catches up (keeps lock holds short).
INDEX_BATCH = 2000


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def recipient_term(address: str) -> str:
    """Return the ``email_search`` term of a recipient address (case-insensitive).

    :param address: the e-mail address.
    :return: the term.
    """
    return "to:" + address.lower()


def custom_arg_term(key: str, value: str) -> str:
    """Return the ``email_search`` term of one custom_args pair.

    :param key: the custom_args key.
    :param value: its (string) value.
    :return: the term.
    """
    return "arg:" + json.dumps([key, value], separators=(",", ":"))


def email_search_terms(request: Any, recipients: Sequence[str]) -> set[str]:
    """Return the lookup terms of one mail send: every recipient and every string custom_args pair.

    :param request: the decoded v3 mail send body (anything else contributes no custom_args).
    :param recipients: every to/cc/bcc address.
    :return: the terms.
    """
    terms = {recipient_term(a) for a in recipients}
    if not isinstance(request, dict):
        return terms
    blocks = [request.get("custom_args")]
    blocks += [p.get("custom_args") for p in request.get("personalizations") or () if isinstance(p, dict)]
    for block in blocks:
        if isinstance(block, dict):
            terms.update(custom_arg_term(str(k), v) for k, v in block.items() if isinstance(v, str))
    return terms


def _check_channel(channel: str) -> str:
    if channel not in _TABLES:
        raise ValueError(f"Unknown sandbox channel {channel!r}: use one of {list(CHANNELS)}.")
    return channel


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit={limit} is out of range: use 1..{MAX_LIMIT}.")
    return limit


class SandboxStore:
    """The sandbox's SQLite file: accepted SMS, e-mails and Monte Carlo calls, and the fault settings.

    Safe to use from many threads and processes at once. Creating the object does no I/O; the file, its
    directory and its tables are created on first use.

    :param path: the SQLite file.
    :param busy_timeout_ms: how long a writer waits for another process's write lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._init_lock = threading.Lock()
        self._initialised_pid: int | None = None

    @classmethod
    def from_env(cls) -> SandboxStore:
        """Open the file the sandbox uses under the current environment (``DEMOBANK_SANDBOX_DB``).

        :return: the store (no I/O yet).
        """
        return cls(SandboxSettings.from_env().db_path)

    # -- connections -------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _initialise(self) -> None:
        with self._init_lock:
            if self._initialised_pid == os.getpid():
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Two servers opening a new file at once race on the switch to WAL, and SQLite answers that race
            # with "database is locked" at once, without its busy handler: one initialiser at a time, across
            # processes (an advisory lock on a side file) and across store objects of one process.
            with open(self.path.with_name(self.path.name + ".init-lock"), "a+b") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                try:
                    self._create_schema()
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
            self._initialised_pid = os.getpid()

    def _create_schema(self) -> None:
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            conn = self._open()
            try:
                # Switching to WAL needs a moment of exclusivity; the busy timeout covers other processes.
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise OSError(
                        f"SQLite file {self.path} could not be switched to WAL journal mode (got {mode!r}); "
                        "put DEMOBANK_SANDBOX_DB on a local file system that supports shared memory."
                    )
                conn.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                # A writer that opened the file before it was WAL (e.g. an older process) can still make the
                # switch fail without waiting: retry until the busy timeout, as SQLite would for a write.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            finally:
                conn.close()
            time.sleep(0.05)

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == pid:
            return conn
        if self._initialised_pid != pid:
            self._initialise()
        conn = self._open()
        local.conn = conn
        local.pid = pid
        return conn

    def close(self) -> None:
        """Close the calling thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    def initialise(self) -> None:
        """Create the file and tables now instead of on first use (idempotent)."""
        self._conn()

    # -- writes ------------------------------------------------------------------------------------------

    def record_sms(self, resource: dict[str, Any]) -> int:
        """Record one accepted SMS message.

        :param resource: the Twilio Message resource as returned to the client.
        :return: the row id.
        """
        cur = self._conn().execute(
            "INSERT INTO sms_messages (sid, account_sid, to_number, from_number, messaging_service_sid, body,"
            " status, num_segments, created_at, resource) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                resource["sid"],
                resource["account_sid"],
                resource["to"],
                resource.get("from"),
                resource.get("messaging_service_sid"),
                resource["body"],
                resource["status"],
                int(resource["num_segments"]),
                time.time(),
                json.dumps(resource, separators=(",", ":")),
            ),
        )
        return int(cur.lastrowid or 0)

    def record_email(
        self,
        *,
        message_id: str,
        from_email: str,
        subject: str | None,
        recipients: Sequence[str],
        request: dict[str, Any] | bytes | str,
    ) -> int:
        """Record one accepted mail send request.

        :param message_id: the ``X-Message-Id`` returned to the client.
        :param from_email: the sender address.
        :param subject: the top-level subject (or the first personalization's).
        :param recipients: every to/cc/bcc address of every personalization, in order.
        :param request: the JSON body as received (bytes/str are stored verbatim).
        :return: the row id.
        """
        if isinstance(request, bytes):
            raw = request.decode("utf-8")
        elif isinstance(request, str):
            raw = request
        else:
            raw = json.dumps(request, separators=(",", ":"))
        cur = self._conn().execute(
            "INSERT INTO email_messages (message_id, from_email, subject, recipients, created_at, request)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (message_id, from_email, subject, json.dumps(list(recipients)), time.time(), raw),
        )
        return int(cur.lastrowid or 0)

    def record_montecarlo(self, *, endpoint: str, operation: str | None, payload: bytes | str | Any) -> int:
        """Record one accepted Monte Carlo call.

        :param endpoint: the route that received it (``/graphql`` or ``/airflow/callbacks``).
        :param operation: the GraphQL field(s) or the gateway's ``airflow_operation``.
        :param payload: the JSON body as received (bytes/str are stored verbatim).
        :return: the row id.
        """
        if isinstance(payload, bytes):
            raw = payload.decode("utf-8")
        elif isinstance(payload, str):
            raw = payload
        else:
            raw = json.dumps(payload, separators=(",", ":"))
        cur = self._conn().execute(
            "INSERT INTO montecarlo_calls (endpoint, operation, created_at, payload) VALUES (?, ?, ?, ?)",
            (endpoint, operation, time.time(), raw),
        )
        return int(cur.lastrowid or 0)

    def clear(self, channel: str | None = None) -> int:
        """Delete recorded messages.

        :param channel: one channel, or None for all of them.
        :return: how many rows were deleted.
        """
        channels = [_check_channel(channel)] if channel else list(_TABLES)
        conn = self._conn()
        deleted = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name in channels:
                deleted += conn.execute(f"DELETE FROM {_TABLES[name]}").rowcount  # noqa: S608  fixed names
                if name == "email":
                    conn.execute("DELETE FROM email_search")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return deleted

    # -- reads -------------------------------------------------------------------------------------------

    def list_messages(
        self, channel: str | None = None, limit: int = 100, *, to: str | None = None
    ) -> list[dict[str, Any]]:
        """Return recorded messages, newest first.

        :param channel: ``sms``, ``email``, ``montecarlo``, or None for all channels merged.
        :param limit: at most this many rows (1..10000).
        :param to: only SMS sent to this number / e-mails with this recipient (any of to, cc, bcc).
        :return: one dict per message (see :meth:`_sms_row`, :meth:`_email_row`, :meth:`_montecarlo_row`).
        :raises ValueError: for an unknown channel, a bad limit, or ``to`` with the montecarlo channel.
        """
        _check_limit(limit)
        if channel is None:
            rows: list[dict[str, Any]] = []
            for name in _TABLES:
                if to is not None and name == "montecarlo":
                    continue
                rows.extend(self.list_messages(name, limit, to=to))
            rows.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
            return rows[:limit]
        _check_channel(channel)
        conn = self._conn()
        if channel == "sms":
            sql = "SELECT id, created_at, resource FROM sms_messages"
            params: tuple[Any, ...] = ()
            if to is not None:
                sql += " WHERE to_number = ?"
                params = (to,)
            cur = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
            return [self._sms_row(*row) for row in cur]
        if channel == "email":
            sql = "SELECT id, created_at, message_id, from_email, subject, recipients, request FROM email_messages"
            params = ()
            if to is not None:
                sql += " WHERE EXISTS (SELECT 1 FROM json_each(recipients) WHERE lower(value) = lower(?))"
                params = (to,)
            cur = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
            return [self._email_row(*row) for row in cur]
        if to is not None:
            raise ValueError("The 'to' filter applies to the sms and email channels only, not montecarlo.")
        cur = conn.execute(
            "SELECT id, created_at, endpoint, operation, payload FROM montecarlo_calls ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [self._montecarlo_row(*row) for row in cur]

    def count_messages(self, channel: str) -> int:
        """Count recorded messages of one channel.

        :param channel: ``sms``, ``email`` or ``montecarlo``.
        :return: the number of rows.
        """
        table = _TABLES[_check_channel(channel)]
        return int(self._conn().execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    def get_sms(self, sid: str, account_sid: str | None = None) -> dict[str, Any] | None:
        """Return the Twilio Message resource of one recorded SMS.

        :param sid: the message SID (``SM…``).
        :param account_sid: if given, the message must belong to this account.
        :return: the resource, or None if unknown.
        """
        row = self._conn().execute("SELECT account_sid, resource FROM sms_messages WHERE sid = ?", (sid,)).fetchone()
        if row is None or (account_sid is not None and row[0] != account_sid):
            return None
        resource: dict[str, Any] = json.loads(row[1])
        return resource

    def page_sms(
        self,
        account_sid: str,
        *,
        to: str | None = None,
        from_: str | None = None,
        created_min: float | None = None,
        created_max: float | None = None,
        before_id: int | None = None,
        after_id: int | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[tuple[int, str]]:
        """Return one page of recorded SMS of an account, newest (highest id) first, for Twilio's list route.

        The resources are returned as the stored compact JSON text so that the route can answer without
        decoding and re-encoding every record.

        :param account_sid: only messages of this account.
        :param to: only messages sent to this number (exact match; uses the ``to_number`` index).
        :param from_: only messages sent from this number (exact match).
        :param created_min: only messages recorded at or after this epoch time.
        :param created_max: only messages recorded before this epoch time.
        :param before_id: keyset paging forwards: only rows with a smaller id.
        :param after_id: keyset paging backwards: only rows with a larger id (the nearest ones are returned).
        :param offset: rows to skip (offset paging; keep 0 with keyset paging).
        :param limit: at most this many rows (1..10000).
        :return: ``(id, resource JSON)`` pairs, newest first.
        :raises ValueError: for a bad limit or offset.
        """
        _check_limit(limit)
        if offset < 0:
            raise ValueError(f"offset={offset} is negative: use 0 or more.")
        where = ["account_sid = ?"]
        params: list[Any] = [account_sid]
        for clause, value in (
            ("to_number = ?", to),
            ("from_number = ?", from_),
            ("created_at >= ?", created_min),
            ("created_at < ?", created_max),
            ("id < ?", before_id),
            ("id > ?", after_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        # Backwards paging reads the rows just above after_id in ascending order, then flips them.
        order = "ASC" if after_id is not None else "DESC"
        sql = f"SELECT id, resource FROM sms_messages WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ? OFFSET ?"  # noqa: S608  fixed clauses
        rows = [(int(r[0]), str(r[1])) for r in self._conn().execute(sql, (*params, limit, offset))]
        if after_id is not None:
            rows.reverse()
        return rows

    def index_emails(self, batch: int = INDEX_BATCH) -> int:
        """Add the lookup terms of every send recorded since the last call to ``email_search``.

        Cheap when nothing is new (two indexed reads). Otherwise works in write transactions of ``batch``
        sends; concurrent callers in other threads or processes wait for each other and never index a send
        twice, because the ids of later sends are always above the high-water mark.

        :param batch: sends per transaction.
        :return: how many sends were indexed.
        """
        conn = self._conn()
        pending_sql = (
            "SELECT (SELECT coalesce(max(id), 0) FROM email_messages)"
            " > coalesce((SELECT indexed_upto FROM email_search_state WHERE id = 1), 0)"
        )
        indexed = 0
        while conn.execute(pending_sql).fetchone()[0]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT indexed_upto FROM email_search_state WHERE id = 1").fetchone()
                upto = int(row[0]) if row else 0
                rows = conn.execute(
                    "SELECT id, recipients, request FROM email_messages WHERE id > ? ORDER BY id LIMIT ?",
                    (upto, batch),
                ).fetchall()
                terms: list[tuple[str, int]] = []
                for row_id, recipients, raw in rows:
                    try:
                        request = json.loads(raw)
                    except ValueError:
                        request = None
                    terms += [(t, row_id) for t in email_search_terms(request, json.loads(recipients))]
                conn.executemany("INSERT OR IGNORE INTO email_search (term, email_id) VALUES (?, ?)", terms)
                if rows:
                    conn.execute(
                        "INSERT INTO email_search_state (id, indexed_upto) VALUES (1, ?)"
                        " ON CONFLICT (id) DO UPDATE SET indexed_upto = excluded.indexed_upto",
                        (rows[-1][0],),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            indexed += len(rows)
            if not rows:
                break
        return indexed

    def iter_emails(self, terms: Sequence[str] = ()) -> Iterator[tuple[int, float, str, str, str | None, str]]:
        """Yield recorded mail sends, newest first, that have every one of ``terms`` (all sends if none).

        The terms come from :func:`recipient_term` / :func:`custom_arg_term`; they are looked up through the
        ``email_search`` primary key (brought up to date first with :meth:`index_emails`), so only candidate
        rows are read. The caller applies the exact match. Consume the iterator in the thread that created
        it; close it to stop early.

        :param terms: lookup terms that must all be present.
        :return: ``(id, created_at, message_id, from_email, subject, request JSON)`` tuples.
        """
        sql = "SELECT id, created_at, message_id, from_email, subject, request FROM email_messages"
        if terms:
            self.index_emails()
            lookups = " INTERSECT ".join(["SELECT email_id FROM email_search WHERE term = ?"] * len(terms))
            sql += f" WHERE id IN ({lookups})"
        cur = self._conn().execute(sql + " ORDER BY id DESC", tuple(terms))
        try:
            yield from cur
        finally:
            cur.close()

    @staticmethod
    def _sms_row(row_id: int, created_at: float, resource: str) -> dict[str, Any]:
        res = json.loads(resource)
        return {
            "id": row_id,
            "channel": "sms",
            "created_at": _iso(created_at),
            "sid": res["sid"],
            "account_sid": res["account_sid"],
            "to": res["to"],
            "from": res.get("from"),
            "messaging_service_sid": res.get("messaging_service_sid"),
            "body": res["body"],
            "status": res["status"],
            "num_segments": int(res["num_segments"]),
            "resource": res,
        }

    @staticmethod
    def _email_row(
        row_id: int,
        created_at: float,
        message_id: str,
        from_email: str,
        subject: str | None,
        recipients: str,
        request: str,
    ) -> dict[str, Any]:
        return {
            "id": row_id,
            "channel": "email",
            "created_at": _iso(created_at),
            "message_id": message_id,
            "from": from_email,
            "subject": subject,
            "recipients": json.loads(recipients),
            "request": json.loads(request),
        }

    @staticmethod
    def _montecarlo_row(
        row_id: int, created_at: float, endpoint: str, operation: str | None, payload: str
    ) -> dict[str, Any]:
        return {
            "id": row_id,
            "channel": "montecarlo",
            "created_at": _iso(created_at),
            "endpoint": endpoint,
            "operation": operation,
            "payload": json.loads(payload),
        }

    # -- faults ------------------------------------------------------------------------------------------

    def get_faults(self) -> FaultConfig:
        """Return the current fault settings (no faults if none were set).

        :return: the settings.
        """
        row = self._conn().execute("SELECT config FROM faults WHERE id = 1").fetchone()
        if row is None:
            return NO_FAULTS
        return FaultConfig.model_validate_json(row[0])

    def set_faults(self, config: FaultConfig) -> FaultConfig:
        """Replace the fault settings for every process using this file.

        :param config: the new settings.
        :return: the stored settings.
        """
        self._conn().execute(
            "INSERT INTO faults (id, config, updated_at) VALUES (1, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
            (config.model_dump_json(), time.time()),
        )
        return config

    def reset_faults(self) -> FaultConfig:
        """Remove every fault setting.

        :return: the (empty) settings now in force.
        """
        self._conn().execute("DELETE FROM faults")
        return NO_FAULTS
