"""The core banking source: its tables, and a deterministic generator of realistic data to fill them.

The source is the landing zone of the core banking system's end-of-day export (connection ``core_banking``:
a SQLite file in ``make run``, PostgreSQL when scaled out). Its tables:

``transactions``
    One row per exported transaction, **every column text** as the export delivers it (``amount`` is a decimal
    string such as ``"42.50"``): typing and checking them is the pipeline's job. ``row_id`` is the export's row
    number (unique); ``transaction_id`` is the bank's id and is *not* unique here (an export can repeat a row).
    ``business_date`` (``YYYY-MM-DD``) is the export day the row belongs to.
``export_batches``
    One row per exported business day: ``business_date``, ``row_count``, ``exported_at``. A day without a row
    here has not been exported: the pipeline treats it as a missing source.
``accounts``, ``customers``, ``merchants``
    Reference data: accounts (``ACC-…``, currency, opening balance at 2026-01-01), their customers (``CUST-…``),
    card merchants with their ISO 18245 merchant category code (MCC).
``fx_rates``
    Euros per unit of each currency, per day.
``seed_info``
    What the generator wrote (a fingerprint), so that seeding again is a no-op.
``demobank_seed_marker``
    The seed marker: the generator writes only into a database it created (an empty one, which it then marks),
    and refuses one that holds other tables, so that it never drops a real core banking table.

The generator is deterministic: the same seed and plan give the same rows on every machine (NumPy's
``default_rng`` seeded per day, so one day's rows do not depend on which other days are generated). Realistic:
twelve countries and seven currencies (JPY without decimals), card payments at merchants with MCCs and
lognormal amounts per kind of merchant, cash withdrawals in round amounts, direct debits, standing orders,
salaries and transfers with masked IBANs, pending card authorisations, more activity by day than at night,
fewer transactions on weekends and holidays.

Malformed rows can be injected at a given share of a day (each gets exactly one defect, see :data:`DEFECTS`):
a non-decimal, negative, missing or over-precise amount, an unknown currency, a missing or unknown account, a
malformed timestamp, an invalid direction, or a duplicate of an earlier row.

``make run`` seeds :func:`demo_plan`: 2026-01-01 through 2026-01-07 (about 300,000 transactions, 0.2% of
them malformed), plus two small days for the end-to-end tests: 2026-01-08 (2,000 rows, 5% malformed) and
2026-01-09 (2,000 rows, 50% malformed), plus yesterday (500 rows), the day the daily scheduled run loads.
Command line::

    python -m demobank.data_factory.core_banking seed --url sqlite:///.airflow/core_banking.db
    python -m demobank.data_factory.core_banking seed --conn-id core_banking --day 2026-01-05:1000000:0
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import sys
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.schema import CreateTable

from demobank.db.seed_marker import MARKER_TABLE, ForeignDatabaseError, claim_for_seeding

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the generator's output changes (part of the seed fingerprint)."""

DEFAULT_SEED = 20_260_101
"""The seed ``make run`` uses."""

WINDOW_START = date(2026, 1, 1)
"""Opening balances are balances at the start of this day."""

# -- the source's tables ------------------------------------------------------------------------------------

metadata = MetaData()

TRANSACTION_COLUMNS: tuple[str, ...] = (
    "row_id", "business_date", "transaction_id", "account_id", "amount", "currency", "direction", "status",
    "channel", "merchant_id", "counterparty_name", "counterparty_iban", "description", "booked_at", "value_date",
)  # fmt: skip
"""The columns of the source's ``transactions`` table, in order."""

transactions = Table(
    "transactions",
    metadata,
    Column("row_id", BigInteger, primary_key=True, autoincrement=False),
    *(Column(name, Text) for name in TRANSACTION_COLUMNS[1:]),
    Index("ix_transactions_business_date_row_id", "business_date", "row_id"),
)
export_batches = Table(
    "export_batches",
    metadata,
    Column("business_date", String(10), primary_key=True),
    Column("row_count", Integer, nullable=False),
    Column("exported_at", Text, nullable=False),
)
CUSTOMER_COLUMNS: tuple[str, ...] = (
    "customer_id", "full_name", "email", "customer_type", "segment", "country_of_residence", "preferred_language",
    "onboarding_channel", "kyc_status", "marketing_consent", "created_at", "updated_at",
)  # fmt: skip
customers = Table(
    "customers",
    metadata,
    Column("customer_id", String(32), primary_key=True),
    *(Column(name, Text) for name in CUSTOMER_COLUMNS[1:]),
    Index("ix_customers_updated_at", "updated_at", "customer_id"),
)
ACCOUNT_COLUMNS: tuple[str, ...] = (
    "account_id", "customer_id", "currency", "account_type", "opened_on", "opening_balance",
)  # fmt: skip
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(32), primary_key=True),
    *(Column(name, Text) for name in ACCOUNT_COLUMNS[1:]),
)
MERCHANT_COLUMNS: tuple[str, ...] = ("merchant_id", "name", "mcc", "city", "country")
merchants = Table(
    "merchants",
    metadata,
    Column("merchant_id", String(32), primary_key=True),
    *(Column(name, Text) for name in MERCHANT_COLUMNS[1:]),
)
fx_rates = Table(
    "fx_rates",
    metadata,
    Column("rate_date", String(10), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("eur_per_unit", Text, nullable=False),
)
seed_info = Table(
    "seed_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

SOURCE_TABLES: tuple[str, ...] = ("transactions", "export_batches", "accounts", "customers", "merchants", "fx_rates")
"""The tables the pipelines read (``seed_info`` is the generator's own)."""

# -- reference data ------------------------------------------------------------------------------------------

CURRENCY_DECIMALS: dict[str, int] = {"EUR": 2, "GBP": 2, "USD": 2, "CHF": 2, "SEK": 2, "PLN": 2, "JPY": 0}
"""The currencies of the generated data and their ISO 4217 minor units."""

_EUR_PER_UNIT = {"EUR": 1.0, "GBP": 1.17, "USD": 0.92, "CHF": 1.05, "SEK": 0.087, "PLN": 0.23, "JPY": 0.0062}

# country: (currency, language, weight, cities, company suffix, IBAN length)
_COUNTRIES: dict[str, tuple[str, str | None, float, tuple[str, ...], str, int]] = {
    "DE": ("EUR", "de", 30, ("Berlin", "Hamburg", "München", "Köln", "Frankfurt"), "GmbH", 22),
    "FR": ("EUR", "fr", 12, ("Paris", "Lyon", "Marseille", "Toulouse"), "SARL", 27),
    "NL": ("EUR", "nl", 8, ("Amsterdam", "Rotterdam", "Utrecht"), "B.V.", 18),
    "ES": ("EUR", "es", 8, ("Madrid", "Barcelona", "Valencia", "Sevilla"), "S.L.", 24),
    "IT": ("EUR", "it", 8, ("Roma", "Milano", "Torino", "Napoli"), "S.r.l.", 27),
    "AT": ("EUR", "de-AT", 4, ("Wien", "Graz", "Linz"), "GmbH", 20),
    "GB": ("GBP", "en-GB", 10, ("London", "Manchester", "Edinburgh", "Bristol"), "Ltd", 22),
    "US": ("USD", "en-US", 6, ("New York", "Chicago", "San Francisco", "Boston"), "LLC", 0),
    "CH": ("CHF", "de-CH", 5, ("Zürich", "Genève", "Basel"), "AG", 21),
    "SE": ("SEK", "sv", 3, ("Stockholm", "Göteborg", "Malmö"), "AB", 24),
    "PL": ("PLN", "pl", 4, ("Warszawa", "Kraków", "Gdańsk"), "Sp. z o.o.", 28),
    "JP": ("JPY", "ja", 2, ("Tokyo", "Osaka", "Kyoto"), "K.K.", 0),
}

# kind: (MCC, median amount in EUR, sigma of log amount, brands)
_MERCHANT_KINDS: dict[str, tuple[str, float, float, tuple[str, ...]]] = {
    "grocery": ("5411", 32, 0.7, ("Rewe", "Edeka", "Carrefour", "Albert Heijn", "Mercadona", "Esselunga", "Tesco",
                                  "Whole Foods", "Coop", "ICA", "Biedronka", "Lawson", "Lidl", "Aldi", "Spar")),
    "restaurant": ("5812", 38, 0.6, ("Trattoria Da Marco", "Bistro Central", "Sushi Zen", "The Old Steakhouse",
                                     "Brasserie du Marché", "Taverna Olympia", "Curry House")),
    "fast_food": ("5814", 9, 0.5, ("McDonald's", "Starbucks", "Burger King", "Pret A Manger", "Subway",
                                   "Blue Bottle Coffee")),
    "fuel": ("5541", 62, 0.35, ("Shell", "Aral", "TotalEnergies", "BP", "Repsol", "Eni")),
    "transit": ("4111", 11, 0.9, ("Deutsche Bahn", "SNCF", "NS", "Renfe", "Trenitalia", "TfL", "MTA", "SBB")),
    "taxi": ("4121", 19, 0.5, ("Uber", "Bolt", "FreeNow")),
    "drugstore": ("5912", 21, 0.6, ("dm-drogerie markt", "Rossmann", "Boots", "Walgreens", "Farmacia Centrale")),
    "department": ("5311", 74, 0.8, ("Galeries Lafayette", "El Corte Inglés", "KaDeWe", "Marks & Spencer",
                                     "Macy's")),
    "electronics": ("5732", 155, 0.9, ("MediaMarkt", "Saturn", "Fnac", "Currys", "Best Buy")),
    "clothing": ("5691", 56, 0.6, ("Zara", "H&M", "Uniqlo", "C&A", "Primark")),
    "cinema": ("7832", 24, 0.3, ("CinemaxX", "Pathé", "Odeon", "UCI Kinowelt")),
}
_IN_PERSON_WEIGHTS = {"grocery": 34, "restaurant": 12, "fast_food": 16, "fuel": 8, "transit": 9, "taxi": 3,
                      "drugstore": 7, "department": 3, "electronics": 2, "clothing": 5, "cinema": 1}
# Online merchants (card not present): name, country, MCC, median EUR, sigma
_ONLINE: tuple[tuple[str, str, str, float, float], ...] = (
    ("Amazon EU", "DE", "5999", 42, 0.8), ("Zalando", "DE", "5691", 68, 0.6), ("Bol.com", "NL", "5999", 35, 0.7),
    ("Netflix", "NL", "5815", 13, 0.2), ("Spotify", "SE", "5815", 11, 0.1), ("Apple.com/bill", "GB", "5815", 9, 0.6),
    ("Lufthansa", "DE", "4511", 240, 0.7), ("Air France", "FR", "4511", 220, 0.7), ("easyJet", "GB", "4511", 95, 0.6),
    ("Booking.com", "NL", "7011", 180, 0.6), ("Marriott", "US", "7011", 210, 0.5), ("Etsy", "US", "5999", 30, 0.7),
    ("Vodafone", "GB", "4814", 35, 0.3), ("Deutsche Bahn", "DE", "4112", 49, 0.7),
)  # fmt: skip
_ATM_MCC = "6011"

_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sofia", "Lucas", "Amara", "Kenji", "Priya", "Diego", "Fatima",
    "Jonas", "Chloe", "Mohammed", "Grace", "Ethan", "Leila", "Tomás", "Hannah", "Arjun", "Isabella", "Kwame", "Mia",
    "Oscar", "Yuki", "Nora", "Samuel", "Zara", "Lena", "Felix", "Marie", "Paul", "Giulia", "Marco", "Elena", "Pablo",
    "Agnieszka", "Piotr", "Astrid", "Erik", "Charlotte", "Henry", "Léa", "Hugo", "Anouk", "Daan", "Haruto", "Sakura",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Nguyen", "Okafor", "Müller", "Rossi", "Kim", "Patel", "Silva", "Cohen", "Haddad",
    "Novak", "Andersen", "Dubois", "Tanaka", "Mensah", "Kowalski", "Reyes", "O'Brien", "Schmidt", "Schneider",
    "Fischer", "Weber", "Martin", "Bernard", "de Jong", "Jansen", "Fernández", "López", "Bianchi", "Romano",
    "Lindqvist", "Nowak", "Wiśniewska", "Suzuki", "Brown", "Wilson", "Moreau", "Keller",
)  # fmt: skip
_COMPANY_WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent",
                  "Cyberdyne", "Nordwind", "Alpenglow", "Rivermill", "Bluefin", "Oakridge", "Sunpeak")
_DIRECT_DEBITS = ("Stadtwerke", "EDF", "Vattenfall", "Allianz Versicherung", "AXA", "Vodafone", "Telekom",
                  "Orange", "Fitness First", "Enel Energia", "British Gas", "Iberdrola", "Urban Sports Club")
_LANDLORDS = ("Hausverwaltung Schmidt", "Immobilien Keller GmbH", "Foncia", "Vesteda", "Homes & Co Lettings",
              "Casa Lettings S.L.", "Savings account")
_CHANNELS = ("card_present", "card_not_present", "atm", "mobile_app", "online_banking", "direct_debit",
             "standing_order", "incoming_transfer")
_CHANNEL_P = (0.46, 0.19, 0.05, 0.08, 0.04, 0.08, 0.03, 0.07)
_MONTHS = ("JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER", "OCTOBER",
           "NOVEMBER", "DECEMBER")
_HOLIDAYS = {(1, 1), (12, 25), (12, 26)}

DEFECTS: tuple[str, ...] = (
    "amount_not_decimal", "amount_negative", "amount_missing", "amount_precision", "currency_unknown",
    "account_missing", "account_unknown", "booked_at_malformed", "direction_invalid", "duplicate",
)  # fmt: skip
"""The defects :func:`generate_day` can inject, one per malformed row, in turn."""


def ascii_fold(value: str) -> str:
    """``"Tomás O'Brien"`` -> ``"Tomas O'Brien"``: strip accents (e-mail addresses, statement texts)."""
    return unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")


# -- plans -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaySpec:
    """One business day to generate.

    :param day: the business date.
    :param rows: how many rows the export has for that day (malformed ones included).
    :param malformed_share: the share of those rows with a defect, 0 to 1 (rounded to whole rows).
    """

    day: date
    rows: int
    malformed_share: float = 0.0

    def __post_init__(self) -> None:
        if self.rows < 0:
            raise ValueError(f"rows for {self.day} must be 0 or more, got {self.rows}")
        if not 0 <= self.malformed_share <= 1:
            raise ValueError(
                f"malformed_share for {self.day} must be between 0 and 1 (e.g. 0.05 for 5%), got {self.malformed_share}"
            )

    @property
    def malformed_rows(self) -> int:
        """How many rows get a defect."""
        return round(self.rows * self.malformed_share)

    @classmethod
    def parse(cls, spec: str) -> DaySpec:
        """Parse ``YYYY-MM-DD[:ROWS[:SHARE]]`` (e.g. ``2026-01-08:2000:0.05``) from the command line.

        :raises ValueError: naming the part that is wrong.
        """
        parts = spec.split(":")
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"day spec {spec!r} is not YYYY-MM-DD[:ROWS[:SHARE]], e.g. 2026-01-08:2000:0.05")
        try:
            day = date.fromisoformat(parts[0])
        except ValueError:
            raise ValueError(f"day spec {spec!r}: {parts[0]!r} is not a date YYYY-MM-DD") from None
        try:
            rows = int(parts[1]) if len(parts) > 1 else default_rows(day)
            share = float(parts[2]) if len(parts) > 2 else 0.0
        except ValueError:
            raise ValueError(f"day spec {spec!r}: ROWS must be a whole number and SHARE a number 0..1") from None
        return cls(day, rows, share)


def default_rows(day: date) -> int:
    """The demo volume of a day: 50,000 on working days, fewer on weekends and holidays."""
    if (day.month, day.day) in _HOLIDAYS:
        return 30_000
    return {5: 40_000, 6: 30_000}.get(day.weekday(), 50_000)


DEMO_PLAN: tuple[DaySpec, ...] = (
    *(DaySpec(WINDOW_START + timedelta(days=n), default_rows(WINDOW_START + timedelta(days=n)), 0.002)
      for n in range(7)),
    DaySpec(date(2026, 1, 8), 2_000, 0.05),
    DaySpec(date(2026, 1, 9), 2_000, 0.50),
)
"""What ``make run`` seeds: 2026-01-01..07 (about 300,000 rows, 0.2% malformed); 2026-01-08 (2,000 rows, 5%
malformed) and 2026-01-09 (2,000 rows, 50% malformed) for the end-to-end tests."""

RECENT_DAY_ROWS = 500
"""The size of the rolling "yesterday" that :func:`demo_plan` adds (small: it is loaded as soon as `make run`
starts, beside whatever the user does)."""


def demo_plan(today: date | None = None) -> tuple[DaySpec, ...]:
    """:data:`DEMO_PLAN` plus the day before ``today`` (UTC), so that the daily scheduled run `make run` starts
    with (it loads "yesterday") finds an export instead of failing as a missing source.

    The generator seeds each day on its own, so adding yesterday changes no other day's rows.
    """
    yesterday = (today or datetime.now(UTC).date()) - timedelta(days=1)
    if any(spec.day == yesterday for spec in DEMO_PLAN):
        return DEMO_PLAN
    return (*DEMO_PLAN, DaySpec(yesterday, RECENT_DAY_ROWS, 0.002))


@dataclass(frozen=True)
class Reference:
    """The reference data (customers, accounts, merchants) as column arrays, and lookups the generator needs."""

    customers: dict[str, np.ndarray]
    accounts: dict[str, np.ndarray]
    merchants: dict[str, np.ndarray]
    account_country: np.ndarray
    account_weight: np.ndarray
    merchant_kind: np.ndarray
    in_person_by_country: dict[str, np.ndarray]
    in_person_kind_p: dict[str, np.ndarray]
    online: np.ndarray
    atm_by_country: dict[str, np.ndarray]
    persons: np.ndarray
    person_ibans: np.ndarray
    employers: np.ndarray
    employer_ibans: np.ndarray
    sizes: dict[str, int] = field(default_factory=dict)


def _iban(rng: np.random.Generator, country: str, n: int) -> np.ndarray:
    """Masked IBANs (country, check digits, stars, last 4), e.g. ``DE89**************3000``."""
    length = _COUNTRIES[country][5] or 22
    check = rng.integers(10, 99, n)
    tail = rng.integers(0, 10_000, n)
    country_code = country if _COUNTRIES[country][5] else "DE"  # US/JP accounts pay from a euro account
    return np.array([f"{country_code}{c:02d}{'*' * (length - 8)}{t:04d}" for c, t in zip(check, tail, strict=True)],
                    dtype=object)


def generate_reference(seed: int = DEFAULT_SEED, customers_count: int = 20_000) -> Reference:
    """Generate customers, accounts and merchants (deterministic for a seed and size).

    :param seed: the random seed.
    :param customers_count: how many customers (accounts: about 1.35 per customer).
    """
    rng = np.random.default_rng([seed, 1])
    country_codes = np.array(list(_COUNTRIES), dtype=object)
    weights = np.array([spec[2] for spec in _COUNTRIES.values()], dtype=float)
    n = customers_count
    country = rng.choice(country_codes, n, p=weights / weights.sum())
    business = rng.random(n) < 0.08
    first = rng.choice(np.array(_FIRST_NAMES, dtype=object), n)
    last = rng.choice(np.array(_LAST_NAMES, dtype=object), n)
    word = rng.choice(np.array(_COMPANY_WORDS, dtype=object), n)
    ids = np.array([f"CUST-{100_001 + i}" for i in range(n)], dtype=object)
    names = np.empty(n, dtype=object)
    emails = np.empty(n, dtype=object)
    for i in range(n):
        if business[i]:
            names[i] = f"{word[i]} {last[i]} {_COUNTRIES[country[i]][4]}"
            emails[i] = f"info.{100_001 + i}@example.com"
        else:
            names[i] = f"{first[i]} {last[i]}"
            local = "".join(ch for ch in ascii_fold(f"{first[i]}.{last[i]}").lower() if ch.isalnum() or ch == ".")
            emails[i] = f"{local}.{100_001 + i}@example.com"
    segment = np.where(
        business,
        rng.choice(np.array(["small_business", "corporate"], dtype=object), n, p=[0.8, 0.2]),
        rng.choice(np.array(["retail", "premier", "private_banking"], dtype=object), n, p=[0.85, 0.12, 0.03]),
    )
    language = np.array([_COUNTRIES[c][1] for c in country], dtype=object)
    language[rng.random(n) < 0.05] = None
    channel = rng.choice(np.array(["branch", "mobile_app", "online_banking", "partner"], dtype=object), n,
                         p=[0.25, 0.45, 0.25, 0.05])
    kyc = np.where(rng.random(n) < 0.97, "verified", "pending").astype(object)
    consent = np.where(rng.random(n) < 0.4, "true", "false").astype(object)
    start = datetime(2015, 1, 1, tzinfo=UTC).timestamp()
    end = datetime(2026, 1, 8, tzinfo=UTC).timestamp() - 1
    created = rng.uniform(start, end, n)
    recent = rng.random(n) < 0.01  # onboarded during the demo window
    created[recent] = rng.uniform(datetime(2026, 1, 1, tzinfo=UTC).timestamp(), end, int(recent.sum()))
    created = np.floor(created)
    changed = rng.random(n) < 0.3
    updated = np.where(changed, created + np.floor(rng.random(n) * (end - created)), created)
    customers_cols = {
        "customer_id": ids, "full_name": names, "email": emails,
        "customer_type": np.where(business, "business", "individual").astype(object), "segment": segment,
        "country_of_residence": country, "preferred_language": language, "onboarding_channel": channel,
        "kyc_status": kyc, "marketing_consent": consent,
        "created_at": _timestamps(created), "updated_at": _timestamps(updated),
    }  # fmt: skip

    # Accounts: a current account each, some a second current or a savings account.
    extra = np.minimum(rng.poisson(0.35, n), 2)
    owner = np.repeat(np.arange(n), 1 + extra)
    first_of_owner = np.r_[True, owner[1:] != owner[:-1]]
    m = len(owner)
    savings = ~first_of_owner & (rng.random(m) < 0.6)
    acc_country = country[owner]
    acc_currency = np.array([_COUNTRIES[c][0] for c in acc_country], dtype=object)
    foreign = ~first_of_owner & (rng.random(m) < 0.1) & (acc_currency != "EUR")
    acc_currency[foreign] = "EUR"
    opened = np.maximum(created[owner] + rng.uniform(0, 86_400 * 30, m), created[owner])
    opened = np.minimum(opened, end)
    median = np.where(savings, 8_000.0, 2_500.0) * np.where(business[owner], 6.0, 1.0)
    balance_eur = rng.lognormal(np.log(median), 1.0)
    rate = np.array([_EUR_PER_UNIT[c] for c in acc_currency])
    decimals = np.array([CURRENCY_DECIMALS[c] for c in acc_currency])
    minor = np.round(balance_eur / rate * 10.0**decimals).astype(np.int64)
    accounts_cols = {
        "account_id": np.array([f"ACC-{2_000_001 + i}" for i in range(m)], dtype=object),
        "customer_id": ids[owner],
        "currency": acc_currency,
        "account_type": np.where(savings, "savings", "current").astype(object),
        "opened_on": np.array([datetime.fromtimestamp(t, UTC).date().isoformat() for t in opened], dtype=object),
        "opening_balance": format_minor_units(minor, decimals),
    }
    activity = rng.lognormal(0.0, 0.8, m) * np.where(savings, 0.02, 1.0) * np.where(business[owner], 3.0, 1.0)

    # Merchants: in-person ones per country and city, online ones, and the bank's ATMs.
    m_ids, m_names, m_mcc, m_city, m_country, m_kind = [], [], [], [], [], []
    in_person: dict[str, list[int]] = {}
    atms: dict[str, list[int]] = {}
    for code, spec in _COUNTRIES.items():
        for kind, (mcc, _median, _sigma, brands) in _MERCHANT_KINDS.items():
            for brand in rng.choice(np.array(brands, dtype=object), min(3, len(brands)), replace=False):
                for city in rng.choice(np.array(spec[3], dtype=object), 2, replace=False):
                    in_person.setdefault(code, []).append(len(m_ids))
                    m_ids.append(f"MER-{len(m_ids) + 10_001}")
                    m_names.append(str(brand))
                    m_mcc.append(mcc)
                    m_city.append(str(city))
                    m_country.append(code)
                    m_kind.append(kind)
        for city in spec[3]:
            atms.setdefault(code, []).append(len(m_ids))
            m_ids.append(f"MER-{len(m_ids) + 10_001}")
            m_names.append("Demo Bank ATM")
            m_mcc.append(_ATM_MCC)
            m_city.append(city)
            m_country.append(code)
            m_kind.append("atm")
    online = []
    for name, code, mcc, _median, _sigma in _ONLINE:
        online.append(len(m_ids))
        m_ids.append(f"MER-{len(m_ids) + 10_001}")
        m_names.append(name)
        m_mcc.append(mcc)
        m_city.append(_COUNTRIES[code][3][0])
        m_country.append(code)
        m_kind.append(f"online:{name}")
    merchants_cols = {
        "merchant_id": np.array(m_ids, dtype=object), "name": np.array(m_names, dtype=object),
        "mcc": np.array(m_mcc, dtype=object), "city": np.array(m_city, dtype=object),
        "country": np.array(m_country, dtype=object),
    }  # fmt: skip
    kinds = np.array(m_kind, dtype=object)
    kind_p = {}
    for code, members in in_person.items():
        w = np.array([_IN_PERSON_WEIGHTS[kinds[i]] for i in members], dtype=float)
        kind_p[code] = w / w.sum()

    persons_n = 600
    p_first = rng.choice(np.array(_FIRST_NAMES, dtype=object), persons_n)
    p_last = rng.choice(np.array(_LAST_NAMES, dtype=object), persons_n)
    persons = np.array([f"{a} {b}" for a, b in zip(p_first, p_last, strict=True)], dtype=object)
    employers = np.array([f"{w} {c} {_COUNTRIES[c][4]}" for w in _COMPANY_WORDS for c in ("DE", "FR", "GB", "NL")],
                         dtype=object)
    return Reference(
        customers=customers_cols,
        accounts=accounts_cols,
        merchants=merchants_cols,
        account_country=acc_country,
        account_weight=activity / activity.sum(),
        merchant_kind=kinds,
        in_person_by_country={code: np.array(v) for code, v in in_person.items()},
        in_person_kind_p=kind_p,
        online=np.array(online),
        atm_by_country={code: np.array(v) for code, v in atms.items()},
        persons=persons,
        person_ibans=_iban(rng, "DE", persons_n),
        employers=employers,
        employer_ibans=_iban(rng, "FR", len(employers)),
        sizes={"customers": n, "accounts": m, "merchants": len(m_ids)},
    )


def _timestamps(epoch_seconds: np.ndarray) -> np.ndarray:
    """RFC 3339 UTC timestamps (``2026-01-05T09:41:07Z``) from epoch seconds."""
    values = epoch_seconds.astype("datetime64[s]")
    return np.array([f"{v}Z" for v in values.astype(str)], dtype=object)


def format_minor_units(minor: np.ndarray, decimals: np.ndarray | int) -> np.ndarray:
    """Decimal strings from integer minor units: ``(4250, 2)`` -> ``"42.50"``, ``(1200, 0)`` -> ``"1200"``."""
    decimals = np.broadcast_to(np.asarray(decimals), minor.shape)
    out = np.empty(len(minor), dtype=object)
    for i, (value, places) in enumerate(zip(minor.tolist(), decimals.tolist(), strict=True)):
        if places == 0:
            out[i] = str(value)
        else:
            sign = "-" if value < 0 else ""
            whole, frac = divmod(abs(value), 10**places)
            out[i] = f"{sign}{whole}.{frac:0{places}d}"
    return out


def fx_rates_for(day: date, seed: int = DEFAULT_SEED) -> dict[str, str]:
    """Euros per unit of each currency on ``day`` (a small random walk around fixed rates)."""
    rng = np.random.default_rng([seed, 2, day.toordinal()])
    rates = {}
    for currency, base in _EUR_PER_UNIT.items():
        rate = base if currency == "EUR" else base * (1 + 0.004 * rng.standard_normal())
        rates[currency] = f"{rate:.8f}"
    return rates


_TIMES = np.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)], dtype=object)


def generate_day(ref: Reference, spec: DaySpec, seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Generate one business day's export rows as column arrays (``TRANSACTION_COLUMNS``).

    :param ref: the reference data from :func:`generate_reference`.
    :param spec: the day, its number of rows and its share of malformed rows.
    :param seed: the random seed.
    :return: columns of equal length, sorted by booking time; ``row_id`` is unique across days.
    """
    rng = np.random.default_rng([seed, 3, spec.day.toordinal()])
    n = spec.rows
    day = spec.day
    rates = {c: float(r) for c, r in fx_rates_for(day, seed).items()}
    account = rng.choice(len(ref.account_weight), n, p=ref.account_weight)
    channel = rng.choice(np.array(_CHANNELS, dtype=object), n, p=_CHANNEL_P)
    home = ref.account_country[account]
    currency = ref.accounts["currency"][account].copy()
    merchant = np.full(n, -1)
    median = np.full(n, 50.0)
    sigma = np.full(n, 1.0)

    card = channel == "card_present"
    abroad = card & (rng.random(n) < 0.05)
    countries = np.array(list(_COUNTRIES), dtype=object)
    where = np.where(abroad, rng.choice(countries, n), home)
    for code, members in ref.in_person_by_country.items():
        rows = np.flatnonzero(card & (where == code))
        merchant[rows] = rng.choice(members, len(rows), p=ref.in_person_kind_p[code])
    atm = channel == "atm"
    atm_abroad = atm & (rng.random(n) < 0.05)
    atm_where = np.where(atm_abroad, rng.choice(countries, n), home)
    for code, members in ref.atm_by_country.items():
        rows = np.flatnonzero(atm & (atm_where == code))
        merchant[rows] = rng.choice(members, len(rows))
    online = channel == "card_not_present"
    merchant[online] = rng.choice(ref.online, int(online.sum()))
    kind_of = ref.merchant_kind
    for kind, (_mcc, med, sig, _brands) in _MERCHANT_KINDS.items():
        rows = (merchant >= 0) & (kind_of[np.maximum(merchant, 0)] == kind)
        median[rows], sigma[rows] = med, sig
    for name, _code, _mcc, med, sig in _ONLINE:
        rows = (merchant >= 0) & (kind_of[np.maximum(merchant, 0)] == f"online:{name}")
        median[rows], sigma[rows] = med, sig
    foreign = abroad | atm_abroad
    m_country = ref.merchants["country"][np.maximum(merchant, 0)]
    currency[foreign] = np.array([_COUNTRIES[c][0] for c in m_country[foreign]], dtype=object)

    counterparty = np.full(n, None, dtype=object)
    iban = np.full(n, None, dtype=object)
    description = np.full(n, None, dtype=object)
    salary = (channel == "incoming_transfer") & (rng.random(n) < 0.35)
    for chan, med, sig in (("direct_debit", 55, 0.7), ("standing_order", 720, 0.5), ("incoming_transfer", 140, 1.0),
                           ("mobile_app", 85, 1.0), ("online_banking", 160, 1.0)):
        rows = channel == chan
        median[rows], sigma[rows] = med, sig
    median[salary], sigma[salary] = 3_100, 0.35
    median[atm], sigma[atm] = 110, 0.6
    amount_eur = rng.lognormal(np.log(median), sigma)
    rate = np.array([rates[c] for c in currency])
    decimals = np.array([CURRENCY_DECIMALS[c] for c in currency])
    local = amount_eur / rate
    atm_step = np.where(currency == "JPY", 1_000, 20)
    local[atm] = np.clip(np.round(local[atm] / atm_step[atm]), 1, 25) * atm_step[atm]
    minor = np.maximum(np.round(local * 10.0**decimals), 1).astype(np.int64)

    # Statement texts and counterparties.
    m_names = ref.merchants["name"]
    m_cities = ref.merchants["city"]
    has_merchant = merchant >= 0
    idx = np.flatnonzero(has_merchant)
    description[idx] = [
        ascii_fold(f"{m_names[k]} {m_cities[k]}").upper()[:140] if not atm[i] else f"ATM {ascii_fold(m_cities[k])}"
        .upper() for i, k in zip(idx, merchant[idx], strict=True)
    ]
    dd = np.flatnonzero(channel == "direct_debit")
    pick = rng.integers(0, len(_DIRECT_DEBITS), len(dd))
    counterparty[dd] = np.array(_DIRECT_DEBITS, dtype=object)[pick]
    iban[dd] = ref.employer_ibans[pick % len(ref.employer_ibans)]
    description[dd] = [f"DIRECT DEBIT {ascii_fold(_DIRECT_DEBITS[p]).upper()}" for p in pick]
    so = np.flatnonzero(channel == "standing_order")
    pick = rng.integers(0, len(_LANDLORDS), len(so))
    counterparty[so] = np.array(_LANDLORDS, dtype=object)[pick]
    iban[so] = ref.person_ibans[pick]
    description[so] = f"STANDING ORDER RENT {_MONTHS[day.month - 1]} {day.year}"
    sal = np.flatnonzero(salary)
    pick = rng.integers(0, len(ref.employers), len(sal))
    counterparty[sal] = ref.employers[pick]
    iban[sal] = ref.employer_ibans[pick]
    description[sal] = f"SALARY {_MONTHS[day.month - 1]} {day.year}"
    for chan, prefix in (("incoming_transfer", "TRANSFER FROM"), ("mobile_app", "TRANSFER TO"),
                         ("online_banking", "TRANSFER TO")):
        rows = np.flatnonzero((channel == chan) & ~salary)
        pick = rng.integers(0, len(ref.persons), len(rows))
        counterparty[rows] = ref.persons[pick]
        iban[rows] = ref.person_ibans[pick]
        description[rows] = [f"{prefix} {ascii_fold(ref.persons[p]).upper()}" for p in pick]

    refund = (card | online) & (rng.random(n) < 0.01)
    direction = np.where((channel == "incoming_transfer") | refund, "credit", "debit").astype(object)
    pending = (card | online) & ~refund & (rng.random(n) < 0.12)
    status = np.where(pending, "pending", "booked").astype(object)

    # Booking times: card payments through the day, direct debits and salaries early, transfers by day.
    seconds = np.clip(rng.normal(14 * 3600, 4 * 3600, n), 0, 86_399)
    early = (channel == "direct_debit") | (channel == "standing_order") | salary
    seconds[early] = rng.uniform(2 * 3600, 6 * 3600, int(early.sum()))
    transfers = np.isin(channel, ["mobile_app", "online_banking"]) | ((channel == "incoming_transfer") & ~salary)
    seconds[transfers] = rng.uniform(7 * 3600, 23 * 3600, int(transfers.sum()))
    order = np.argsort(seconds, kind="stable")

    iso = day.isoformat()
    compact = iso.replace("-", "")
    seconds = seconds.astype(np.int64)[order]
    base_row = day.toordinal() * 10_000_000
    columns = {
        "row_id": np.arange(base_row, base_row + n, dtype=np.int64),
        "business_date": np.full(n, iso, dtype=object),
        "transaction_id": np.array([f"TXN-{compact}{i:07d}" for i in range(n)], dtype=object),
        "account_id": ref.accounts["account_id"][account][order],
        "amount": format_minor_units(minor[order], decimals[order]),
        "currency": currency[order],
        "direction": direction[order],
        "status": status[order],
        "channel": channel[order],
        "merchant_id": np.where(has_merchant, ref.merchants["merchant_id"][np.maximum(merchant, 0)], None)[order],
        "counterparty_name": counterparty[order],
        "counterparty_iban": iban[order],
        "description": description[order],
        "booked_at": np.array([f"{iso}T{t}Z" for t in _TIMES[seconds]], dtype=object),
        "value_date": np.where(status == "booked", iso, None)[order],
    }
    _inject_defects(columns, spec, rng)
    return columns


def _inject_defects(columns: dict[str, np.ndarray], spec: DaySpec, rng: np.random.Generator) -> None:
    """Give ``spec.malformed_rows`` rows one defect each, cycling through :data:`DEFECTS`."""
    count = spec.malformed_rows
    n = spec.rows
    if count == 0:
        return
    if n < 2:
        raise ValueError(f"{spec.day}: malformed rows need a day of at least 2 rows, got {n}")
    rows = np.sort(rng.choice(np.arange(1, n), min(count, n - 1), replace=False))
    if count > n - 1:  # every row but the first is malformed; the first one too
        rows = np.r_[0, rows]
    clean = np.setdiff1d(np.arange(n), rows)
    for k, row in enumerate(rows.tolist()):
        defect = DEFECTS[k % len(DEFECTS)]
        if defect == "duplicate":
            earlier = clean[clean < row]
            if len(earlier) == 0:
                defect = "amount_missing"
            else:
                source = int(earlier[rng.integers(0, len(earlier))])
                for name, values in columns.items():
                    if name != "row_id":
                        values[row] = values[source]
                continue
        amount = columns["amount"][row]
        if defect == "amount_not_decimal":
            columns["amount"][row] = amount.replace(".", ",") if "." in amount else f"{amount},00"
        elif defect == "amount_negative":
            columns["amount"][row] = f"-{amount}"
        elif defect == "amount_missing":
            columns["amount"][row] = None
        elif defect == "amount_precision":
            columns["amount"][row] = f"{amount}5" if "." in amount else f"{amount}.5"
        elif defect == "currency_unknown":
            columns["currency"][row] = "XYZ"
        elif defect == "account_missing":
            columns["account_id"][row] = None
        elif defect == "account_unknown":
            columns["account_id"][row] = f"ACC-9{int(rng.integers(0, 1_000_000)):06d}"
        elif defect == "booked_at_malformed":
            booked = columns["booked_at"][row]
            columns["booked_at"][row] = f"{booked[8:10]}/{booked[5:7]}/{booked[0:4]} {booked[11:16]}"
        elif defect == "direction_invalid":
            columns["direction"][row] = "DR"


# -- writing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedResult:
    """What :func:`seed` did."""

    seeded: bool
    fingerprint: str
    seconds: float
    counts: dict[str, int]
    days: list[str]


def fingerprint(plan: Sequence[DaySpec], seed: int, customers_count: int) -> str:
    """A short hash of everything that determines the generated rows."""
    payload = json.dumps(
        {"version": GENERATOR_VERSION, "seed": seed, "customers": customers_count,
         "plan": [{**asdict(s), "day": s.day.isoformat()} for s in plan]},
        sort_keys=True,
    )  # fmt: skip
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _stored_fingerprint(engine: Engine) -> str | None:
    if "seed_info" not in inspect(engine).get_table_names():
        return None
    with engine.connect() as connection:
        return connection.execute(text("SELECT value FROM seed_info WHERE key = 'fingerprint'")).scalar()


def _rows(columns: dict[str, np.ndarray], names: Sequence[str]) -> list[tuple[Any, ...]]:
    arrays = [columns[name].tolist() for name in names]
    return list(zip(*arrays, strict=True))


def _write_table(engine: Engine, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Bulk insert: ``COPY`` on PostgreSQL, ``executemany`` on SQLite."""
    if not rows:
        return
    names = [column.name for column in table.columns]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            for chunk_start in range(0, len(rows), 200_000):
                buffer = io.StringIO()
                writer = csv.writer(buffer, lineterminator="\n")
                for row in rows[chunk_start : chunk_start + 200_000]:
                    writer.writerow(["\\N" if value is None else value for value in row])
                buffer.seek(0)
                cursor.copy_expert(
                    f"COPY {table.name} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer
                )
        else:
            placeholders = ", ".join("?" for _ in names)
            cursor.executemany(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({placeholders})",  # noqa: S608 - our names
                               rows)
        raw.commit()
    finally:
        raw.close()


SEEDER = "core_banking"
"""The generator's name in the seed marker (see :mod:`demobank.db.seed_marker`)."""


def _seeded_before_markers(connection: Connection, tables: set[str]) -> bool:
    """Whether an unmarked database is this generator's own earlier work (seeded before seed markers existed):
    nothing but the generator's tables, and its fingerprint in ``seed_info``."""
    if not tables <= set(metadata.tables) | {MARKER_TABLE} or seed_info.name not in tables:
        return False
    return connection.execute(text("SELECT value FROM seed_info WHERE key = 'fingerprint'")).scalar() is not None


def seed(
    engine: Engine,
    plan: Sequence[DaySpec] = DEMO_PLAN,
    seed_value: int = DEFAULT_SEED,
    *,
    customers_count: int = 20_000,
    force: bool = False,
) -> SeedResult:
    """Fill the core banking source with generated data; a no-op when it already holds exactly this plan.

    Only a database that the generator created is written to: an empty one (then marked as the generator's, see
    :mod:`demobank.db.seed_marker`) or one that carries its marker. Any other content of the generator's tables
    there is replaced (it is demo data): the tables are dropped and created again, rows are written in bulk
    (``COPY`` on PostgreSQL), indexes are built last.

    :param engine: the source database (an empty one, or one this function seeded).
    :param plan: the days to generate.
    :param seed_value: the random seed.
    :param customers_count: how many customers.
    :param force: seed again even if the fingerprint matches.
    :raises ForeignDatabaseError: the database holds tables but not the generator's marker; nothing was written.
    """
    started = time.perf_counter()
    days = sorted({spec.day for spec in plan})
    if len(days) != len(plan):
        raise ValueError("the plan names a day twice: give each day once")
    claim_for_seeding(engine, SEEDER, adopt=_seeded_before_markers)
    stamp = fingerprint(plan, seed_value, customers_count)
    if not force and _stored_fingerprint(engine) == stamp:
        return SeedResult(False, stamp, time.perf_counter() - started, {}, [d.isoformat() for d in days])
    ref = generate_reference(seed_value, customers_count)
    metadata.drop_all(engine)
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            connection.execute(CreateTable(table))  # indexes after the data: a faster bulk insert
    _write_table(engine, customers, _rows(ref.customers, CUSTOMER_COLUMNS))
    _write_table(engine, accounts, _rows(ref.accounts, ACCOUNT_COLUMNS))
    _write_table(engine, merchants, _rows(ref.merchants, MERCHANT_COLUMNS))
    fx_days = sorted({d + timedelta(days=k) for d in days for k in (-1, 0)})
    _write_table(engine, fx_rates, [(d.isoformat(), c, r) for d in fx_days for c, r in fx_rates_for(d, seed_value)
                                    .items()])
    total = 0
    batches = []
    for spec in sorted(plan, key=lambda s: s.day):
        columns = generate_day(ref, spec, seed_value)
        _write_table(engine, transactions, _rows(columns, TRANSACTION_COLUMNS))
        total += spec.rows
        exported = datetime.combine(spec.day + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=1)
        batches.append((spec.day.isoformat(), spec.rows, exported.strftime("%Y-%m-%dT%H:%M:%SZ")))
    _write_table(engine, export_batches, batches)
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            for idx in table.indexes:
                idx.create(connection)
        connection.execute(seed_info.insert(), [{"key": "fingerprint", "value": stamp},
                                                {"key": "seeded_at", "value": datetime.now(UTC).isoformat()}])
        if engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE"))
    counts = {**ref.sizes, "transactions": total, "days": len(days)}
    return SeedResult(True, stamp, time.perf_counter() - started, counts, [d.isoformat() for d in days])


def iter_csv_day(ref: Reference, spec: DaySpec, seed_value: int = DEFAULT_SEED) -> Iterator[str]:
    """The rows of one generated day as CSV lines (for benchmarks that need the same rows as a file)."""
    columns = generate_day(ref, spec, seed_value)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in _rows(columns, TRANSACTION_COLUMNS):
        writer.writerow(["" if value is None else value for value in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


# -- command line ----------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demobank.data_factory.core_banking",
        description="Fill the core banking source database with deterministic, realistic demo data.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = commands.add_parser("seed", help="generate and write the data (a no-op if already seeded the same way)")
    cmd.add_argument("--url", help="SQLAlchemy URL of the source database (default: the Airflow connection)")
    cmd.add_argument("--conn-id", default="core_banking", help="Airflow connection id (default: %(default)s)")
    cmd.add_argument("--day", action="append", type=DaySpec.parse, metavar="YYYY-MM-DD[:ROWS[:SHARE]]",
                     help="a day to generate instead of the demo plan (repeatable), e.g. 2026-01-05:1000000:0")
    cmd.add_argument("--customers", type=int, default=20_000, help="number of customers (default: %(default)s)")
    cmd.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    cmd.add_argument("--create-database", action="store_true", help="create the PostgreSQL database if missing")
    cmd.add_argument("--force", action="store_true", help="seed again even if the data is already there")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m demobank.data_factory.core_banking seed``; exit 0 on success, 1 when the database is not the
    generator's (see :func:`seed`), 2 on a usage error."""
    args = _parser().parse_args(argv)
    from demobank.data_factory.sources import source_write_engine
    from demobank.db.engine import connection_url, safe_url
    from demobank.db.migrate import ensure_database

    url = args.url or connection_url(args.conn_id)
    if args.create_database:
        ensure_database(url)
    if args.customers < 1:
        print("--customers must be at least 1", file=sys.stderr)
        return 2
    engine = source_write_engine(url)
    try:
        result = seed(engine, tuple(args.day) if args.day else demo_plan(), args.seed,
                      customers_count=args.customers, force=args.force)
    except ForeignDatabaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    where = safe_url(url)
    if not result.seeded:
        print(f"{where} already holds this data (fingerprint {result.fingerprint}): nothing to do")
    else:
        counts = ", ".join(f"{value:,} {name}" for name, value in result.counts.items())
        print(f"seeded {where} in {result.seconds:.1f} s: {counts}; business days {', '.join(result.days)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
