"""The suite's own database (delivery ledger, outbox, ...): SQLAlchemy models and Alembic migrations.

It is never Airflow's metadata database. It is reached through the Airflow connection ``demobank_db``
(SQLite file when embedded, PostgreSQL when scaled out) or the ``DEMOBANK_DB_URL`` environment variable.
It knows no module of the suite: modules import it, not the other way round.

Typical use in a task::

    from demobank.db import Delivery, session_scope

    with session_scope() as session:
        session.add(Delivery(...))

Migrations: ``python -m demobank.db upgrade`` (see :mod:`demobank.db.migrate`).
"""

from __future__ import annotations

from demobank.db.engine import database_url, dispose_engines, get_engine, session_scope
from demobank.db.models import Base, Channel, Delivery, DeliveryStatus, DemoCustomer, Provider

__all__ = [
    "Base",
    "Channel",
    "Delivery",
    "DeliveryStatus",
    "DemoCustomer",
    "Provider",
    "database_url",
    "dispose_engines",
    "get_engine",
    "session_scope",
]
