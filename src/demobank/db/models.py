"""SQLAlchemy models of the suite's own database.

Every schema change needs a hand-written Alembic migration in ``demobank/db/migrations/versions`` that
matches these models (``tests/db`` compares both with Alembic's autogenerate comparison).

Tables:

* ``deliveries`` -- the delivery ledger of the Connect connectors: one row per message that a workflow
  step sends (SMS through Twilio, e-mail through SendGrid), keyed by an idempotency key so that a task retry
  never sends the same message twice.
* ``demo_customers`` -- demo customers for the Connect payment-reminder workflow (seeded by ``make run``).
* ``outbox_events``, ``event_targets``, ``event_deliveries`` -- the Events module's transactional outbox: every
  published event (CloudEvents envelope), the destinations events are delivered to, and one delivery state per
  event and matching target (see :class:`OutboxEvent`).
* ``target_audit`` -- who created, changed, enabled, disabled, pinged or replayed which event target, and when (see
  :class:`TargetAuditEntry`).
* ``event_target_health`` -- per event target: its current failure streak, backoff and automatic pause (see
  :class:`EventTargetHealth`; read and written through :mod:`demobank.events.target_health`).
* ``run_reports`` -- the Data Factory's reports of finished DAG runs to Monte Carlo, written before they are sent
  and re-sent by a sweep until Monte Carlo accepts them (see :class:`RunReport`).
* ``data_quality_runs``, ``data_quality_tables``, ``data_quality_checks`` -- the Data Factory's data quality record:
  per pipeline run its day, outcome and timing, rows in/out/quarantined per table, and each check's result (see
  :class:`DataQualityRun`; read through :mod:`demobank.data_factory.quality`).
* ``logic_app_versions`` -- every deployed version of each Logic App definition: its number, content hash, text,
  author and time (see :class:`LogicAppVersion`; written and read through :mod:`demobank.logic_apps.versions`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CHAR,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names, so that migrations can refer to them on every backend (SQLite batch mode needs names)."""


class Channel(StrEnum):
    """How a delivery reaches its recipient."""

    SMS = "sms"
    EMAIL = "email"


class Provider(StrEnum):
    """The vendor that carries a delivery."""

    TWILIO = "twilio"
    SENDGRID = "sendgrid"


class DeliveryStatus(StrEnum):
    """Where a delivery stands.

    ``pending``: recorded before the provider is called (with ``attempts > 0``, an attempt died before it
    recorded the answer: the provider is asked before it is sent again); ``accepted``: the provider accepted it
    (``provider_message_id`` set); ``failed``: provably not accepted (the provider refused it, or the request
    never reached it; ``error_code`` / ``error_message`` set); ``unknown``: the provider may have accepted it
    (a read timeout, a reset after the request was written, a 5xx): it is looked up at the provider, never
    resent blindly.
    """

    PENDING = "pending"
    ACCEPTED = "accepted"
    FAILED = "failed"
    UNKNOWN = "unknown"


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _in_list(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(member.value) for member in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (UTC), on SQLite too.

    SQLite has no time zone type: values are converted to UTC before they are stored and marked as UTC
    when they are read. Naive datetimes are rejected because their time zone is unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC; reject a naive one."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a timezone-aware datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} has no time zone: pass an aware datetime, "
                "e.g. datetime.now(UTC) or value.replace(tzinfo=UTC) if it is already UTC."
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return the stored value as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):  # A value written by raw SQL (CURRENT_TIMESTAMP) on SQLite.
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table of the suite's database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Delivery(Base):
    """One outbound message (SMS or e-mail) in the delivery ledger, unique per idempotency key."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        CheckConstraint(_in_list("channel", Channel), name="channel"),
        CheckConstraint(_in_list("provider", Provider), name="provider"),
        CheckConstraint(_in_list("status", DeliveryStatus), name="status"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index(None, "dag_id", "run_id"),
        Index(None, "status", "created_at"),
        Index(None, "claimed_by"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    recipient_masked: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    dag_id: Mapped[str | None] = mapped_column(String(250))
    run_id: Mapped[str | None] = mapped_column(String(250))
    task_id: Mapped[str | None] = mapped_column(String(250))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.current_timestamp())
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )
    claimed_by: Mapped[str | None] = mapped_column(String(500))
    """The task try that holds (or last held) the row: only it sends the message and records the outcome."""
    lease_until: Mapped[datetime | None] = mapped_column()
    """Until when ``claimed_by`` holds the row; NULL or past: any task may claim it."""
    attempt_id: Mapped[str | None] = mapped_column(String(64))
    """The latest send request carrying this message (one per SMS, one per e-mail request of many recipients)."""
    attempted_at: Mapped[datetime | None] = mapped_column()
    """When that request started (a lookup can prove a message absent only some time after it)."""

    def __repr__(self) -> str:
        return (
            f"Delivery(id={self.id!r}, idempotency_key={self.idempotency_key!r}, channel={self.channel!r}, "
            f"status={self.status!r}, recipient={self.recipient_masked!r})"
        )


class DemoCustomer(Base):
    """A demo customer of the payment-reminder workflow (fictional phone numbers, ``@example.com``)."""

    __tablename__ = "demo_customers"
    __table_args__ = (
        CheckConstraint("phone LIKE '+%'", name="phone_e164"),
        CheckConstraint("amount_due IS NULL OR amount_due >= 0", name="amount_due_not_negative"),
        Index(None, "payment_due_date"),
    )

    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    full_name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(320))
    payment_due_date: Mapped[date | None] = mapped_column(Date)
    amount_due: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str] = mapped_column(CHAR(3), default="USD", server_default="USD")

    def __repr__(self) -> str:
        return f"DemoCustomer(customer_id={self.customer_id!r}, due={self.payment_due_date!r})"


# -- Events: transactional outbox, targets, per-target delivery state ---------------------------------------------


class TargetKind(StrEnum):
    """What an event target delivers to."""

    EVENTBRIDGE = "eventbridge"
    AIRFLOW_DAG = "airflow_dag"


class EventDeliveryStatus(StrEnum):
    """Where the delivery of one event to one target stands.

    ``pending``: to be delivered (again) at ``next_attempt_at``; ``delivered``: the target accepted it
    (``delivered_at``, ``external_id`` set); ``dead``: given up (dead letter), ``last_error`` says why; a replay
    sets it back to ``pending``.
    """

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


_SEQUENCE_TYPE = BigInteger().with_variant(Integer(), "sqlite")
"""BIGINT on PostgreSQL; INTEGER on SQLite, where only an ``INTEGER PRIMARY KEY`` autoincrements."""


class OutboxEvent(Base):
    """One published event: its CloudEvents envelope as JSON text, written in the publisher's transaction.

    ``sequence`` is the primary key (autoincrement; ``AUTOINCREMENT`` on SQLite, so a value is never reused)
    and orders dispatch; ``id`` is the CloudEvents id (unique), which deliveries refer to. Sequence values are
    assigned at insert and transactions commit in any order, so the dispatcher must not use the sequence as a
    high-water mark: it selects pending ``event_deliveries`` and orders them by sequence.

    ``publisher`` is who published the event (``user:<name>`` or ``dag:<dag_id>``, also in the envelope);
    ``idempotency_key`` the key it was published with, if any: unique per publisher and type (a unique index, in
    which rows without a key, NULL, never collide). Rows written before migration 0006 say ``dag:unknown`` unless
    the migration could tell (see it).
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        UniqueConstraint("id"),
        CheckConstraint("size_bytes >= 0", name="size_bytes_not_negative"),
        Index(None, "type", "time"),
        Index(None, "publisher", "type", "idempotency_key", unique=True),
        {"sqlite_autoincrement": True},
    )

    sequence: Mapped[int] = mapped_column(_SEQUENCE_TYPE, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(250))
    time: Mapped[datetime]
    publisher: Mapped[str] = mapped_column(String(255), server_default="dag:unknown")
    idempotency_key: Mapped[str | None] = mapped_column(String(500))
    envelope: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.current_timestamp())

    def __repr__(self) -> str:
        return f"OutboxEvent(sequence={self.sequence!r}, id={self.id!r}, type={self.type!r})"


class EventTarget(Base):
    """A destination of events, with the event types it receives.

    ``config`` (JSON object) for ``eventbridge``: ``aws_conn_id`` (default ``aws_default``), ``bus_name``
    (default ``demobank-events``), ``region_name`` (default: the connection's), ``max_event_bytes`` (default
    256 KiB, EventBridge's entry limit). ``event_types`` (JSON list): exact types, ``"*"`` for every type, or a
    prefix pattern such as ``"transaction.*"``. ``match`` (JSON object or null) narrows the filter by the event's
    data, e.g. ``{"amount": {">=": "1000"}}`` (see :mod:`demobank.events.targets`).
    ``airflow_dag`` targets start a DAG run per event (config: ``dag_id``; see
    :mod:`demobank.events.airflow_dag`).
    """

    __tablename__ = "event_targets"
    __table_args__ = (
        UniqueConstraint("name"),
        CheckConstraint(_in_list("kind", TargetKind), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32), default=TargetKind.EVENTBRIDGE.value)
    description: Mapped[str | None] = mapped_column(String(500))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    event_types: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["*"])
    match: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.current_timestamp())
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )

    def __repr__(self) -> str:
        return f"EventTarget(id={self.id!r}, name={self.name!r}, kind={self.kind!r}, enabled={self.enabled!r})"


class EventDelivery(Base):
    """The delivery of one event to one target: status, attempts, last error, next attempt, dispatcher lease.

    A dispatcher claims rows by setting ``claimed_by`` and ``claimed_until`` (a lease) in the transaction that
    selects them; another dispatcher skips rows whose lease has not expired.
    """

    __tablename__ = "event_deliveries"
    __table_args__ = (
        CheckConstraint(_in_list("status", EventDeliveryStatus), name="status"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index(None, "target_id", "status", "next_attempt_at"),
        Index(None, "status", "delivered_at", "target_id"),  # the delivery rate of the last minutes (backlog)
    )

    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("outbox_events.id", ondelete="CASCADE"), primary_key=True
    )
    target_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("event_targets.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), default=EventDeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    external_id: Mapped[str | None] = mapped_column(String(200))
    dismissed_at: Mapped[datetime | None]  # a dead letter an operator dismissed (no longer "new"); see target_health
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.current_timestamp())
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )

    def __repr__(self) -> str:
        return (
            f"EventDelivery(event_id={self.event_id!r}, target_id={self.target_id!r}, status={self.status!r}, "
            f"attempts={self.attempts!r})"
        )


class EventTargetHealth(Base):
    """How an event target is doing: its current streak of failed publishes, when the dispatcher may try it again
    (backoff), and whether it paused itself. One row per target that ever failed; no row is a healthy target.

    ``failure_count`` and ``failing_since`` describe the current streak (0 and null once a publish succeeds or the
    target is resumed); ``next_attempt_at`` is when the next probe may be claimed (also the probe's lease while it
    runs); ``paused_at`` and ``paused_reason`` are set when the streak lasted longer than the pause limit: the target
    is not dispatched until it is resumed (or enabled). ``last_error`` and ``last_failure_at`` stay as history.
    """

    __tablename__ = "event_target_health"
    __table_args__ = (CheckConstraint("failure_count >= 0", name="failure_count_not_negative"),)

    target_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("event_targets.id", ondelete="CASCADE"), primary_key=True
    )
    failure_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failing_since: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_failure_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    paused_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )

    def __repr__(self) -> str:
        return (f"EventTargetHealth(target_id={self.target_id!r}, failure_count={self.failure_count!r}, "
                f"paused_at={self.paused_at!r})")


class TargetAuditEntry(Base):
    """One entry of the event targets' audit trail: who did what to which target, when, with what details
    (``created``, ``changed`` with a before/after of the changed fields, ``enabled``, ``disabled``, ``pinged``,
    ``replayed``, …; see :mod:`demobank.events.audit`). Written in the transaction of the change it records.

    No foreign key to ``event_targets``: the trail keeps the target's name and outlives the target.
    """

    __tablename__ = "target_audit"
    __table_args__ = (Index(None, "target_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(250))
    action: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(Integer)
    target_name: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def __repr__(self) -> str:
        return f"TargetAuditEntry(id={self.id!r}, action={self.action!r}, target_id={self.target_id!r})"


# -- Data Factory: run reports (Monte Carlo) -----------------------------------------------------------------------


class RunReportStatus(StrEnum):
    """Where the report of one DAG run to Monte Carlo stands.

    ``pending``: to be sent (again) by the next sender: the run's callback first, then the sweep DAG
    ``data_factory_report_sweep`` (``next_attempt_at`` is a sender's lease: nobody else sends it before then);
    ``accepted``: Monte Carlo accepted it (``accepted_at``); ``rejected``: Monte Carlo refused it with a 4xx
    (credentials, payload), ``last_error`` says why; not retried until requeued.
    """

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RunReport(Base):
    """The report of one finished DAG run to Monte Carlo: written before it is sent, so none is lost.

    ``body`` is the exact JSON body sent to the integration gateway (``POST /airflow/callbacks``, airflow-mcd's
    format); the other columns repeat what the UI needs (outcome, timing, failed tasks, lineage). ``report_key``
    (a hash of DAG, run, state and end date) makes a repeated callback for the same outcome a no-op, while a
    cleared and re-run DAG run gets a report of its own.
    """

    __tablename__ = "run_reports"
    __table_args__ = (
        UniqueConstraint("report_key"),
        CheckConstraint(_in_list("status", RunReportStatus), name="status"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "dag_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_key: Mapped[str] = mapped_column(String(64))
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    run_state: Mapped[str] = mapped_column(String(32))
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(100))
    failed_task_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    inlet_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    outlet_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    run_start_date: Mapped[datetime | None]
    run_end_date: Mapped[datetime | None]
    conn_id: Mapped[str] = mapped_column(String(250))
    operation: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=RunReportStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    dismissed_at: Mapped[datetime | None]  # a rejected report an operator dismissed (no longer "new")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.current_timestamp())
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )

    def __repr__(self) -> str:
        return (
            f"RunReport(id={self.id!r}, dag_id={self.dag_id!r}, run_id={self.run_id!r}, "
            f"run_state={self.run_state!r}, status={self.status!r}, attempts={self.attempts!r})"
        )


# -- Data Factory: data quality record ------------------------------------------------------------------------------


class QualityRunStatus(StrEnum):
    """Where a Data Factory run stands in the data quality record."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class QualityCheckStatus(StrEnum):
    """The result of one data quality check in one run."""

    PASSED = "passed"
    FAILED = "failed"
    WARNING = "warning"


class DataQualityRun(Base):
    """One run of a Data Factory DAG in the data quality record: its day, outcome, timing and totals.

    Unique per ``(dag_id, run_id)``: a cleared and re-run DAG run updates its record. ``failed_task`` and
    ``error`` say which task failed and why. The quarantined rows themselves are in the warehouse
    (``quarantine_transactions``); here are their counts.
    """

    __tablename__ = "data_quality_runs"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id"),
        CheckConstraint(_in_list("status", QualityRunStatus), name="status"),
        Index(None, "dag_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    business_date: Mapped[date | None] = mapped_column(Date)
    logical_date: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default=QualityRunStatus.RUNNING.value)
    failed_task: Mapped[str | None] = mapped_column(String(250))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    rows_in: Mapped[int | None] = mapped_column(BigInteger)
    rows_loaded: Mapped[int | None] = mapped_column(BigInteger)
    rows_quarantined: Mapped[int | None] = mapped_column(BigInteger)
    bad_share: Mapped[float | None] = mapped_column(Float)
    max_bad_share: Mapped[float | None] = mapped_column(Float)
    events_published: Mapped[int | None] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return (
            f"DataQualityRun(id={self.id!r}, dag_id={self.dag_id!r}, run_id={self.run_id!r}, "
            f"business_date={self.business_date!r}, status={self.status!r})"
        )


class DataQualityTable(Base):
    """Rows in, out and quarantined for one table (an Asset) in one run; ``detail`` holds further counts
    (inserted, changed, unchanged)."""

    __tablename__ = "data_quality_tables"
    __table_args__ = (UniqueConstraint("run_pk", "table_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_pk: Mapped[int] = mapped_column(Integer, ForeignKey("data_quality_runs.id", ondelete="CASCADE"))
    table_name: Mapped[str] = mapped_column(String(250))
    asset_uri: Mapped[str | None] = mapped_column(String(1500))
    rows_in: Mapped[int | None] = mapped_column(BigInteger)
    rows_out: Mapped[int | None] = mapped_column(BigInteger)
    rows_quarantined: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"DataQualityTable(run_pk={self.run_pk!r}, table_name={self.table_name!r})"


class DataQualityCheck(Base):
    """The result of one data quality check in one run: rows checked and rejected, status and message."""

    __tablename__ = "data_quality_checks"
    __table_args__ = (
        UniqueConstraint("run_pk", "check_name"),
        CheckConstraint(_in_list("status", QualityCheckStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_pk: Mapped[int] = mapped_column(Integer, ForeignKey("data_quality_runs.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(250))
    check_name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    table_name: Mapped[str | None] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(16))
    checked_rows: Mapped[int | None] = mapped_column(BigInteger)
    failed_rows: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"DataQualityCheck(run_pk={self.run_pk!r}, check_name={self.check_name!r}, status={self.status!r})"


# -- Logic Apps: deployed versions ------------------------------------------------------------------------------------


class LogicAppVersion(Base):
    """One deployed version of a Logic App definition (``demobank workflows deploy``): the definition's text as it
    was deployed, its SHA-256 (hex), who deployed it and when. Numbers count from 1 per workflow ``name``; the unique
    ``(name, number)`` keeps two concurrent deploys from taking the same number. Rows are never changed: earlier
    versions stay readable.
    """

    __tablename__ = "logic_app_versions"
    __table_args__ = (
        UniqueConstraint("name", "number"),
        CheckConstraint("number >= 1", name="number_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63))
    number: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    definition: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(250))
    deployed_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"LogicAppVersion(name={self.name!r}, number={self.number!r}, content_hash={self.content_hash[:12]!r})"
