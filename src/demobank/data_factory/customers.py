"""The steps of the ``data_factory_customer_sync`` DAG, Airflow-free: customers from the core banking REST API into
the warehouse, incrementally, and ``customer.created`` for the new ones.

**Source.** ``GET <base>/customers?updated_since=…&page=…&page_size=…`` with a bearer token (connection
``core_banking_api``: host = the API's base URL, password = the token; in ``make run`` the sandbox's demo API,
:mod:`demobank.sandbox.core_banking_api`). Read with ``requests``, page by page; 429, 5xx, timeouts and connection
errors are retried with exponential backoff (at least the ``Retry-After`` the API asks for), other errors fail at
once with the API's message.

**Incremental by watermark.** ``sync_watermarks`` keeps the latest ``updated_at`` seen; a sync asks for the
customers changed at or after it (the boundary is read again: harmless, the upsert changes nothing for an
unchanged customer). Each page is upserted in its own transaction; the watermark moves only when every page is in,
so a failed sync loses nothing: the next one starts from the same watermark.

**customer.created.** A customer that is new to the warehouse *and* was created since the previous watermark is
queued (``customer_event_queue``, in the upsert's transaction); the publishing step sends the queue through the
outbox (idempotency key: the customer id) and empties it. The first sync (no watermark yet) is a backfill of
customers who were created long before: it announces none, unless ``publish_backfill`` is set.

**Bad records.** A record that misses a field or has a malformed value fails the sync with the customer ids and the
fields, before that page is written; the watermark does not move, so nothing is skipped.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import requests
from sqlalchemy import Engine, select, text

from demobank.data_factory import warehouse as wh
from demobank.exceptions import ConfigurationError, DemoBankError
from demobank.retry import RetryPolicy

log = logging.getLogger(__name__)

DAG_ID = "data_factory_customer_sync"
CONN_ID = "core_banking_api"
SOURCE_KEY = "core_banking_api.customers"
DEFAULT_PAGE_SIZE = 500
PUBLISH_BATCH = 500
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
EPOCH = "1970-01-01T00:00:00Z"

CUSTOMER_FIELDS = ("customer_id", "full_name", "email", "customer_type", "segment", "country_of_residence",
                   "preferred_language", "onboarding_channel", "kyc_status", "marketing_consent", "created_at",
                   "updated_at")
_ENUMS = {
    "customer_type": ("individual", "business"),
    "segment": ("retail", "premier", "private_banking", "small_business", "corporate"),
    "onboarding_channel": ("branch", "mobile_app", "online_banking", "partner"),
    "kyc_status": ("pending", "verified"),
}


class CustomerApiError(DemoBankError):
    """The customer API refused a request or stayed unavailable (the message has its status and answer)."""


class CustomerDataError(DemoBankError, ValueError):
    """The customer API sent records that cannot be loaded (the message names the customers and fields)."""


# -- the REST source ------------------------------------------------------------------------------------------


@dataclass
class CustomerApiClient:
    """Pages of customers from the core banking API.

    :param base_url: the API's base URL (``…/core-banking``); ``/customers`` is appended.
    :param token: the bearer token.
    :param retry: how 429, 5xx, timeouts and connection errors are retried.
    :param timeout: connect and read timeouts in seconds.
    """

    base_url: str
    token: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: tuple[float, float] = (5.0, 30.0)
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)
    requests_sent: int = 0

    @classmethod
    def from_connection(cls, conn_id: str = CONN_ID, **options: Any) -> CustomerApiClient:
        """Build the client from an Airflow connection (host = base URL, password = token)."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException as exc:
            raise ConfigurationError(
                f"Airflow connection {conn_id!r} is not defined: add it (make run imports it from "
                f"airflow_settings.yaml) with host = the customer API's base URL and password = its token."
            ) from exc
        host = (conn.host or "").strip()
        if not host:
            raise ConfigurationError(f"Airflow connection {conn_id!r} has no host: set it to the customer API's base "
                                     "URL, e.g. https://core-banking.example/api")
        if "://" not in host:
            scheme = conn.schema or "https"
            host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        if not conn.password:
            raise ConfigurationError(
                f"Airflow connection {conn_id!r} has no password: set it to the API's bearer token")
        return cls(base_url=host.rstrip("/"), token=conn.password, **options)

    def _get(self, params: Mapping[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/customers"
        last = ""
        for attempt in range(1, self.retry.attempts + 1):
            backoff = min(self.retry.maximum, self.retry.initial * 2 ** (attempt - 1))
            wait = backoff + random.uniform(0, self.retry.jitter)
            try:
                self.requests_sent += 1
                response = self.session.get(url, params=params, timeout=self.timeout,
                                            headers={"Authorization": f"Bearer {self.token}",
                                                     "Accept": "application/json"})
            except (requests.ConnectionError, requests.Timeout) as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise CustomerApiError(f"GET {url} answered 200 with a body that is not JSON: "
                                               f"{response.text[:200]!r}") from None
                if response.status_code not in RETRYABLE_STATUSES:
                    raise CustomerApiError(
                        f"GET {url} ({dict(params)}) answered {response.status_code}: {response.text[:500]}"
                        + (" - check the core_banking_api connection's password (the token)"
                           if response.status_code in (401, 403) else ""))
                last = f"{response.status_code} {response.text[:200]}"
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = max(wait, float(retry_after))
            if attempt < self.retry.attempts:
                log.warning("GET %s failed (%s); retry %d of %d in %.1f s", url, last, attempt,
                            self.retry.attempts - 1, wait)
                self.sleep(wait)
        raise CustomerApiError(f"GET {url} still failing after {self.retry.attempts} attempts: {last}. The API is "
                               "unavailable; the watermark did not move, the next sync resumes from it.")

    def pages(self, updated_since: str, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[list[dict[str, Any]]]:
        """Every page of customers changed at or after ``updated_since``, in order."""
        page = 1
        while True:
            body = self._get({"updated_since": updated_since, "page": page, "page_size": page_size})
            records = body.get("customers")
            if not isinstance(records, list):
                raise CustomerApiError(f"the customer API's page {page} has no 'customers' list: {str(body)[:200]}")
            if records:
                yield records
            next_page = body.get("next_page")
            if not next_page or not records:
                return
            page = int(next_page)


# -- validation and loading -------------------------------------------------------------------------------------


def _timestamp(value: Any) -> str:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_customers(records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check a page of customer records; return them normalised (timestamps ``YYYY-MM-DDTHH:MM:SSZ``).

    :raises CustomerDataError: naming each bad record's customer id (or position) and fields.
    """
    import re

    problems: list[str] = []
    clean = []
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            problems.append(f"record {position} is not an object")
            continue
        ident = record.get("customer_id") or f"record {position}"
        bad: list[str] = []
        if not isinstance(record.get("customer_id"), str) or not re.fullmatch(r"CUST-[0-9A-Z]{5,20}",
                                                                             record["customer_id"]):
            bad.append(f"customer_id {record.get('customer_id')!r} is not CUST- and 5 to 20 capital letters or digits")
        if not isinstance(record.get("full_name"), str) or not record["full_name"].strip():
            bad.append("full_name is missing")
        for name, allowed in _ENUMS.items():
            if record.get(name) not in allowed:
                bad.append(f"{name} {record.get(name)!r} is not one of {', '.join(allowed)}")
        if not isinstance(record.get("country_of_residence"), str) or not re.fullmatch(
                r"[A-Z]{2}", record["country_of_residence"]):
            bad.append(f"country_of_residence {record.get('country_of_residence')!r} is not ISO 3166-1 alpha-2")
        language = record.get("preferred_language")
        if language is not None and (not isinstance(language, str)
                                     or not re.fullmatch(r"[a-z]{2,3}(-[A-Z]{2})?", language)):
            bad.append(f"preferred_language {language!r} is not a BCP 47 tag such as de or en-GB")
        consent = record.get("marketing_consent")
        if consent is not None and not isinstance(consent, bool):
            bad.append(f"marketing_consent {consent!r} is not true, false or null")
        stamps = {}
        for name in ("created_at", "updated_at"):
            try:
                stamps[name] = _timestamp(record.get(name))
            except (TypeError, ValueError):
                bad.append(f"{name} {record.get(name)!r} is not an RFC 3339 timestamp with a time zone")
        if bad:
            problems.append(f"{ident}: " + "; ".join(bad))
            continue
        clean.append({**{name: record.get(name) for name in CUSTOMER_FIELDS}, **stamps})
    if problems:
        shown = problems[:10]
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CustomerDataError(
            f"the customer API sent {len(problems)} record(s) that cannot be loaded{more}: " + " | ".join(shown)
            + ". Nothing of this page was written and the watermark did not move: fix the records at the source, "
            "then run the sync again.")
    return clean


@dataclass
class SyncReport:
    """What :func:`sync_customers` did."""

    watermark_before: str | None = None
    watermark_after: str | None = None
    pages: int = 0
    received: int = 0
    upserted: int = 0
    queued: int = 0
    requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"watermark_before": self.watermark_before, "watermark_after": self.watermark_after,
                "pages": self.pages, "received": self.received, "upserted": self.upserted, "queued": self.queued,
                "requests": self.requests}


def _db_stamp(engine: Engine, value: str) -> str:
    """A ``YYYY-MM-DDTHH:MM:SSZ`` timestamp as the warehouse stores it (SQLAlchemy's format on SQLite)."""
    if engine.dialect.name == "sqlite":
        return f"{value[:10]} {value[11:19]}.000000"
    return value


def read_watermark(engine: Engine, source: str = SOURCE_KEY) -> str | None:
    """The stored watermark of ``source`` (``None`` before the first sync)."""
    wh.ensure_schema(engine)
    with engine.connect() as connection:
        return connection.execute(select(wh.sync_watermarks.c.watermark)
                                  .where(wh.sync_watermarks.c.source == source)).scalar()


def sync_customers(client: CustomerApiClient, engine: Engine, *, run_id: str, publish_backfill: bool = False,
                   page_size: int = DEFAULT_PAGE_SIZE, source: str = SOURCE_KEY) -> SyncReport:
    """Fetch the customers changed since the watermark, upsert them, queue ``customer.created`` for new ones."""
    wh.ensure_schema(engine)
    report = SyncReport(watermark_before=read_watermark(engine, source))
    requests_before = client.requests_sent
    since = report.watermark_before or EPOCH
    announce_from = report.watermark_before or (EPOCH if publish_backfill else None)
    newest = report.watermark_before
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") if engine.dialect.name == "sqlite" else now.isoformat()
    columns = [*CUSTOMER_FIELDS, "announce"]
    for records in client.pages(since, page_size):
        page = validate_customers(records)
        report.pages += 1
        report.received += len(page)
        values: list[list[Any]] = [[] for _ in columns]
        for record in page:
            for position, name in enumerate(CUSTOMER_FIELDS):
                value = record[name]
                if name in ("created_at", "updated_at"):
                    value = _db_stamp(engine, value)
                elif name == "marketing_consent" and value is not None:
                    value = (("true" if value else "false") if engine.dialect.name == "postgresql" else int(value))
                values[position].append(value)
            announce = announce_from is not None and record["created_at"] >= announce_from
            values[-1].append(("true" if announce else "false") if engine.dialect.name == "postgresql"
                              else int(announce))
            newest = max(newest or record["updated_at"], record["updated_at"])
        with engine.begin() as connection:
            wh.create_temp_like(connection, wh.customers, "tmp_df_customers", CUSTOMER_FIELDS,
                                extra={"announce": "BOOLEAN"})
            wh.bulk_insert(connection, "tmp_df_customers", columns, [np.asarray(v, dtype=object) for v in values])
            queued = connection.execute(text(
                "INSERT INTO customer_event_queue (customer_id, queued_at, queued_by_run) "
                "SELECT t.customer_id, :stamp, :run FROM tmp_df_customers t WHERE t.announce AND NOT EXISTS "
                "(SELECT 1 FROM customers c WHERE c.customer_id = t.customer_id) "
                "ON CONFLICT (customer_id) DO NOTHING"), {"stamp": stamp, "run": run_id})
            report.queued += max(queued.rowcount, 0)
            report.upserted += wh.upsert_from(
                connection, wh.customers, "tmp_df_customers", CUSTOMER_FIELDS, compare=CUSTOMER_FIELDS[1:],
                extra_values={"synced_at": stamp, "synced_by_run": run_id})
        log.info("customers page %d: %d received, %d upserted so far, %d queued so far", report.pages, len(page),
                 report.upserted, report.queued)
    report.requests = client.requests_sent - requests_before
    if newest and newest != report.watermark_before:
        with engine.begin() as connection:
            placeholder = "?" if engine.dialect.name == "sqlite" else "%s"
            connection.exec_driver_sql(
                "INSERT INTO sync_watermarks (source, watermark, updated_at, updated_by_run) VALUES "  # noqa: S608
                f"({', '.join([placeholder] * 4)}) ON CONFLICT (source) DO UPDATE SET watermark = excluded.watermark, "
                "updated_at = excluded.updated_at, updated_by_run = excluded.updated_by_run",
                (source, newest, stamp, run_id))
    report.watermark_after = newest
    return report


# -- customer.created --------------------------------------------------------------------------------------------


def _rfc3339(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def customer_event_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``customer.created`` data of a warehouse customer (no personal data: see the event's schema)."""
    data: dict[str, Any] = {
        "customer_id": row["customer_id"],
        "customer_type": row["customer_type"],
        "segment": row["segment"],
        "country_of_residence": row["country_of_residence"],
        "onboarding_channel": row["onboarding_channel"],
        "kyc_status": row["kyc_status"],
        "created_at": _rfc3339(row["created_at"]),
    }
    if row.get("preferred_language"):
        data["preferred_language"] = row["preferred_language"]
    if row.get("marketing_consent") is not None:
        data["marketing_consent"] = bool(row["marketing_consent"])
    return data


def publish_customer_events(engine: Engine, suite_engine: Engine | None = None, *, publisher: str | None = None,
                            batch_size: int = PUBLISH_BATCH) -> int:
    """Publish ``customer.created`` for the queued customers (500 per outbox transaction), emptying the queue.

    The outbox's idempotency key is the customer id (in the publisher's own scope): a batch republished after a
    crash between the outbox's commit and the queue's is a no-op.

    :param publisher: the events' publisher; ``dag:data_factory_customer_sync`` by default.
    :return: how many events were published.
    """
    from demobank.db.engine import session_scope
    from demobank.events.outbox import dag_publisher, publish_many

    publisher = publisher or dag_publisher(DAG_ID)

    wh.ensure_schema(engine)
    query = text(
        "SELECT c.customer_id, c.customer_type, c.segment, c.country_of_residence, c.preferred_language, "
        "c.onboarding_channel, c.kyc_status, c.marketing_consent, c.created_at FROM customer_event_queue q "
        "JOIN customers c ON c.customer_id = q.customer_id ORDER BY q.customer_id LIMIT :limit")
    published = 0
    while True:
        with engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query, {"limit": batch_size})]
        if not rows:
            return published
        events = [{"type": "customer.created", "data": customer_event_data(row),
                   "idempotency_key": row["customer_id"],
                   "time": datetime.fromisoformat(_rfc3339(row["created_at"]).replace("Z", "+00:00"))}
                  for row in rows]
        with session_scope(suite_engine) as session:
            publish_many(session, events, publisher=publisher)
        with engine.begin() as connection:
            connection.execute(wh.customer_event_queue.delete().where(
                wh.customer_event_queue.c.customer_id.in_([row["customer_id"] for row in rows])))
        published += len(rows)


# -- DAG steps (with the quality record) ---------------------------------------------------------------------------


def sync_step(*, dag_id: str, run_id: str, task_id: str, warehouse_url: str, publish_backfill: bool = False,
              client: CustomerApiClient | None = None, suite_engine: Engine | None = None,
              logical_date: datetime | None = None) -> dict[str, Any]:
    """Step 1 of the DAG: the sync, recorded in the data quality record."""
    from demobank.data_factory.assets import core_banking_api_url
    from demobank.data_factory.quality import CheckResult, QualityRecorder, TableCounts
    from demobank.data_factory.sources import WAREHOUSE_CONN_ID, check_declared_uri, table_uri
    from demobank.db.engine import get_engine
    from demobank.db.models import QualityCheckStatus

    recorder = QualityRecorder(suite_engine, dag_id, run_id)
    recorder.start(None, logical_date)
    base = check_declared_uri(WAREHOUSE_CONN_ID, warehouse_url)
    client = client or CustomerApiClient.from_connection()
    try:
        report = sync_customers(client, get_engine(warehouse_url), run_id=run_id, publish_backfill=publish_backfill)
    except (CustomerApiError, CustomerDataError) as error:
        kind = "records_valid" if isinstance(error, CustomerDataError) else "source_available"
        recorder.checks(task_id, [CheckResult(kind, "source", QualityCheckStatus.FAILED.value, message=str(error),
                                              table=SOURCE_KEY)])
        raise
    recorder.checks(task_id, [
        CheckResult("source_available", "source", QualityCheckStatus.PASSED.value, checked_rows=report.received,
                    message=f"{report.pages} page(s), {report.requests} request(s)", table=SOURCE_KEY),
        CheckResult("records_valid", "schema", QualityCheckStatus.PASSED.value, checked_rows=report.received,
                    failed_rows=0, message="every record has its fields, ids, codes and timestamps", table=SOURCE_KEY),
    ])
    recorder.tables([
        TableCounts(SOURCE_KEY, f"{core_banking_api_url()}/customers", rows_in=report.received,
                    rows_out=report.received),
        TableCounts("warehouse.customers", table_uri(base, "customers"), rows_in=report.received,
                    rows_out=report.upserted, detail={"unchanged": report.received - report.upserted,
                                                      "watermark_before": report.watermark_before,
                                                      "watermark_after": report.watermark_after}),
        TableCounts("warehouse.customer_event_queue", table_uri(base, "customer_event_queue"), rows_out=report.queued),
    ])
    recorder.update(rows_in=report.received, rows_loaded=report.upserted, rows_quarantined=0, bad_share=0.0)
    return report.as_dict()


def publish_step(*, dag_id: str, run_id: str, warehouse_url: str, suite_engine: Engine | None = None
                 ) -> dict[str, Any]:
    """Step 2 of the DAG: publish the queued ``customer.created`` events; close the run's record as a success."""
    from demobank.data_factory.quality import QualityRecorder, TableCounts
    from demobank.db.engine import get_engine
    from demobank.db.models import QualityRunStatus
    from demobank.events.outbox import dag_publisher

    published = publish_customer_events(get_engine(warehouse_url), suite_engine, publisher=dag_publisher(dag_id))
    recorder = QualityRecorder(suite_engine, dag_id, run_id)
    recorder.update(events_published=published)
    recorder.tables([TableCounts("demobank.outbox_events", "demobank://events/outbox", rows_out=published,
                                 detail={"event_type": "customer.created"})])
    recorder.finish(QualityRunStatus.SUCCESS)
    return {"published": published}
