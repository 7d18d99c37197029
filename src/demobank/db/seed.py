"""Deterministic demo data for the suite's database.

:func:`seed_demo_customers` writes realistic, fictional customers for the Connect payment-reminder
workflow: phone numbers in the range that North American numbering reserves for fiction
(``+1 NPA 555 0100`` to ``0199``), e-mail addresses at ``example.com`` (reserved by RFC 2606), and every
fifth customer due today, every fifth (offset by one) due tomorrow, relative to the ``today`` given.

The seed writes only into a database that is the suite's: one that holds nothing but the suite's migrated tables
(it then marks it as a demo database, see :mod:`demobank.db.seed_marker`) or one it marked before. A database that
also holds tables of something else is refused, untouched.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from demobank.db.engine import session_scope
from demobank.db.migrate import VERSION_TABLE
from demobank.db.models import Base, DemoCustomer
from demobank.db.seed_marker import claim_for_seeding

DEFAULT_SEED = 20_240_601
"""The seed ``make run`` uses, so every machine gets the same customers."""

_AREA_CODES = ("202", "212", "305", "312", "415", "512", "617", "702", "808", "917")
_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sofia", "Lucas", "Amara", "Kenji",
    "Priya", "Diego", "Fatima", "Jonas", "Chloe", "Mohammed", "Grace", "Ethan", "Leila", "Tomás",
    "Hannah", "Arjun", "Isabella", "Kwame", "Mia", "Oscar", "Yuki", "Nora", "Samuel", "Zara",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Nguyen", "Okafor", "Müller", "Rossi", "Kim", "Patel", "Silva",
    "Cohen", "Haddad", "Novak", "Andersen", "Dubois", "Tanaka", "Mensah", "Kowalski", "Reyes", "O'Brien",
)  # fmt: skip
_CURRENCIES = ("USD",) * 8 + ("EUR", "GBP")

MAX_CUSTOMERS = len(_AREA_CODES) * 100
"""How many distinct fictional phone numbers (and so customers) the generator has."""

SEEDER = "demo_customers"
"""This seed's name in the seed marker."""


@dataclass(frozen=True)
class SeedResult:
    """What :func:`seed_demo_customers` did.

    :ivar inserted: customers that were missing and were added.
    :ivar updated: existing customers overwritten with the generated values (``refresh=True`` only).
    :ivar unchanged: existing customers left as they were.
    """

    inserted: int
    updated: int
    unchanged: int


def _ascii_local_part(text: str) -> str:
    """``"Tomás O'Brien"`` -> ``"tomasobrien"``: ASCII letters and digits only, for an e-mail local part."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]", "", ascii_text.lower())


def generate_demo_customers(
    count: int = 50, seed: int = DEFAULT_SEED, today: date | None = None
) -> list[dict[str, Any]]:
    """Generate ``count`` demo customers as column dicts, the same ones for the same arguments.

    :param count: how many customers, 1 to :data:`MAX_CUSTOMERS`.
    :param seed: the random seed (names, amounts, currencies, other due dates).
    :param today: the date "due today" refers to; ``None`` for today's date in UTC.
    :raises ValueError: when ``count`` is out of range.
    """
    if not 1 <= count <= MAX_CUSTOMERS:
        raise ValueError(f"count must be between 1 and {MAX_CUSTOMERS} (fictional phone numbers), got {count}.")
    today = today or datetime.now(UTC).date()
    rng = random.Random(seed)
    customers: list[dict[str, Any]] = []
    for index in range(count):
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        area = _AREA_CODES[index // 100]
        line = 100 + index % 100
        if index % 5 == 0:
            due: date | None = today
        elif index % 5 == 1:
            due = today + timedelta(days=1)
        elif rng.random() < 0.25:
            due = None  # nothing due
        else:
            due = today + timedelta(days=rng.randint(-10, 30))
        amount = None if due is None else Decimal(rng.randint(2_500, 250_000)).scaleb(-2)
        customers.append(
            {
                "customer_id": f"CUST-{index + 1:05d}",
                "full_name": f"{first} {last}",
                "phone": f"+1{area}555{line:04d}",
                "email": f"{_ascii_local_part(first)}.{_ascii_local_part(last)}.{index + 1}@example.com",
                "payment_due_date": due,
                "amount_due": amount,
                "currency": rng.choice(_CURRENCIES),
            }
        )
    return customers


def seed_demo_customers(
    engine: Engine,
    count: int = 50,
    seed: int = DEFAULT_SEED,
    *,
    today: date | None = None,
    refresh: bool = False,
) -> SeedResult:
    """Write the demo customers into ``demo_customers``; idempotent.

    Existing customers (same ``customer_id``) are left alone, or, with ``refresh=True``, overwritten with
    the generated values (use it to move the due dates to the current day on a long-lived database).

    :param engine: an engine on a database migrated to head (``python -m demobank.db upgrade``).
    :param count: how many customers, 1 to :data:`MAX_CUSTOMERS`.
    :param seed: the random seed; the same seed and ``today`` give the same customers.
    :param today: the date "due today" refers to; ``None`` for today's date in UTC.
    :param refresh: overwrite existing customers with the generated values.
    :return: how many customers were inserted, updated and left unchanged.
    :raises ForeignDatabaseError: the database also holds tables that are not the suite's, and no marker of this
        seed; nothing was written.
    """
    rows = generate_demo_customers(count, seed, today)
    claim_for_seeding(engine, SEEDER, own_tables={*Base.metadata.tables, VERSION_TABLE})
    ids = [row["customer_id"] for row in rows]
    for _attempt in range(3):  # Another process may insert the same ids between our read and our write.
        try:
            with session_scope(engine) as session:
                existing = set(
                    session.scalars(select(DemoCustomer.customer_id).where(DemoCustomer.customer_id.in_(ids)))
                )
                missing = [row for row in rows if row["customer_id"] not in existing]
                session.add_all(DemoCustomer(**row) for row in missing)
                updated = 0
                if refresh:
                    for row in rows:
                        if row["customer_id"] in existing:
                            values = {key: value for key, value in row.items() if key != "customer_id"}
                            session.execute(
                                update(DemoCustomer)
                                .where(DemoCustomer.customer_id == row["customer_id"])
                                .values(**values)
                            )
                            updated += 1
            return SeedResult(inserted=len(missing), updated=updated, unchanged=len(existing) - updated)
        except IntegrityError:
            continue
    raise RuntimeError(
        f"could not seed {count} demo customers: other processes kept inserting the same customer ids; "
        "run the seed again once they are done."
    )
