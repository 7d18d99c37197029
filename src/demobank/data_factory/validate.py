"""Validation of the core banking export's transactions, one chunk at a time (pandas, vectorised).

Every row is checked against every rule of :data:`CHECKS`; a row that breaks one or more is *bad*: it is kept
with all its reasons (``"amount '12,50' is not a decimal number such as 42.50; …"``) for the quarantine, and
each rule counts the rows it rejected (the data quality record shows these counts per check).

Before checking, code columns are normalised (surrounding blanks removed; ``currency`` upper case;
``direction``, ``status`` and ``channel`` lower case), so ``" eur"`` is accepted as ``EUR``. An amount with more
decimals than its currency has is refused unless the extra ones are zeros (``"42.500"`` is 42.50 euros).

Duplicates: the first row (lowest ``row_id``) of a ``transaction_id`` that passes every other check is kept, later
ones are bad. The :class:`DuplicateTracker` remembers the ids of the rows kept so far as 64-bit hashes (8 bytes
a row, whatever the length of the ids), so a duplicate in a later chunk is caught too. A hash collision between two
different ids (odds about 1 in 36 million for a day of a million rows) would quarantine a good row, never load a
duplicate: nothing is lost, the row is in the quarantine with its reason.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

TRANSACTION_ID_RE = r"TXN-[0-9A-Z]{8,32}"
ACCOUNT_ID_RE = r"ACC-[0-9A-Z]{5,20}"
MERCHANT_ID_RE = r"MER-[0-9A-Z]{1,28}"
AMOUNT_RE = r"(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?"
NEGATIVE_AMOUNT_RE = r"-(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?"
IBAN_MASKED_RE = r"[A-Z]{2}[0-9]{2}\*+[0-9A-Z]{4}"
BOOKED_AT_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"
DATE_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
MAX_AMOUNT = 10**11
"""Amounts up to 100 billion (in the currency's major unit) are accepted; larger ones are refused."""

DIRECTIONS = ("debit", "credit")
STATUSES = ("pending", "booked")
CHANNELS = ("card_present", "card_not_present", "atm", "mobile_app", "online_banking", "direct_debit",
            "standing_order", "incoming_transfer")
MERCHANT_CHANNELS = ("card_present", "card_not_present", "atm")
REQUIRED = ("transaction_id", "account_id", "amount", "currency", "direction", "status", "channel", "booked_at")
TEXT_LIMITS = {"description": 140, "counterparty_name": 140}

CURRENCY_DECIMALS: dict[str, int] = {
    "EUR": 2, "GBP": 2, "USD": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2, "CZK": 2, "HUF": 2, "JPY": 0,
    "CAD": 2, "AUD": 2, "NZD": 2, "CNY": 2, "HKD": 2, "SGD": 2, "KRW": 0, "INR": 2, "BRL": 2, "MXN": 2, "ZAR": 2,
    "TRY": 2, "ILS": 2, "AED": 2, "SAR": 2, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3, "ISK": 0, "CLP": 0,
}  # fmt: skip
"""ISO 4217 minor units of the currencies the bank books (a currency also needs an FX rate for the day)."""


@dataclass(frozen=True)
class Check:
    """One validation rule: its name in the quality record, the kind of rule, and what it requires."""

    name: str
    kind: str
    description: str


CHECKS: tuple[Check, ...] = (
    Check("required_fields", "nulls", f"{', '.join(REQUIRED)} are present and not empty"),
    Check("transaction_id_format", "schema", "transaction_id is TXN- and 8 to 32 capital letters or digits"),
    Check("account_id_format", "schema", "account_id is ACC- and 5 to 20 capital letters or digits"),
    Check("amount_decimal", "types", "amount is a decimal number with '.' and at most 4 decimals, e.g. 42.50"),
    Check("amount_positive", "amount", "amount is above zero (the direction says debit or credit)"),
    Check("amount_range", "amount", f"amount is below {MAX_AMOUNT:,}"),
    Check("currency_known", "currency", "currency is an ISO 4217 code with an FX rate for the business day"),
    Check("amount_precision", "currency", "amount has no more decimals than its currency (JPY none, EUR two)"),
    Check("direction_valid", "schema", f"direction is one of {', '.join(DIRECTIONS)}"),
    Check("status_valid", "schema", f"status is one of {', '.join(STATUSES)}"),
    Check("channel_valid", "schema", f"channel is one of {', '.join(CHANNELS)}"),
    Check("booked_at_timestamp", "types", "booked_at is an RFC 3339 UTC timestamp, e.g. 2026-01-05T09:41:07Z"),
    Check("booked_at_in_day", "schema", "booked_at falls on the business date"),
    Check("value_date_format", "types", "value_date, if given, is a date YYYY-MM-DD"),
    Check("account_known", "reference", "account_id is an account of the core banking system"),
    Check("merchant_known", "reference", "card and ATM transactions name a known merchant"),
    Check("counterparty_iban_masked", "schema", "counterparty_iban, if given, is masked like DE89****3000"),
    Check("text_lengths", "schema", "description and counterparty_name have at most 140 characters"),
    Check("unique_transaction_id", "duplicates", "transaction_id appears once in the day's export"),
)
"""Every rule, in the order their reasons are listed."""

CHECK_NAMES = tuple(check.name for check in CHECKS)


@dataclass(frozen=True)
class ReferenceData:
    """What validation and transformation look up: the day's FX rates, accounts and merchants.

    :param day: the business date being processed.
    :param fx_rates: euros per unit, by currency code, for ``day``.
    :param accounts: indexed by ``account_id``: ``customer_id``, ``currency``, ``opening_balance``.
    :param merchants: indexed by ``merchant_id``: ``name``, ``mcc``, ``city``, ``country``.
    """

    day: date
    fx_rates: Mapping[str, float]
    accounts: pd.DataFrame
    merchants: pd.DataFrame


@dataclass
class DuplicateTracker:
    """Remembers (as 64-bit hashes, in a few sorted arrays) the transaction ids kept so far in a day."""

    _runs: list[np.ndarray] = field(default_factory=list)  # sorted int64 hashes
    _count: int = 0

    def first_occurrences(self, ids: pd.Series) -> np.ndarray:
        """Mark which of ``ids`` (in row order) are seen for the first time, and remember them."""
        if ids.empty:
            return np.zeros(0, dtype=bool)
        # Python's own string hash (64 bits, salted per process: the tracker lives in one process).
        hashes = np.fromiter(map(hash, ids.to_numpy(dtype=object).tolist()), dtype=np.int64, count=len(ids))
        first = ~pd.Series(hashes).duplicated().to_numpy()
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        seen = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:  # sorted queries into sorted runs: sequential memory access
            positions = np.minimum(np.searchsorted(run, ordered), len(run) - 1)
            seen |= run[positions] == ordered
        first[order[seen]] = False
        kept = np.sort(hashes[first])
        if len(kept):
            self._runs.append(kept)
            self._count += len(kept)
        if len(self._runs) > 4:  # merge now and then: few runs to search, 8 bytes an id
            self._runs = [np.sort(np.concatenate(self._runs))]
        return first

    @property
    def count(self) -> int:
        """How many distinct ids were kept."""
        return self._count


@dataclass
class ChunkResult:
    """The outcome of validating one chunk.

    :ivar good: the rows that passed every check (normalised values, original index).
    :ivar bad: the rows that did not (raw values as extracted) with a ``reasons`` column.
    :ivar failures: rows rejected per check name (a row can count for several checks).
    """

    good: pd.DataFrame
    bad: pd.DataFrame
    failures: dict[str, int]


@functools.cache
def _compiled(pattern: str) -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    """The pattern for one value, and a possessive one for many values joined by NUL characters."""
    possessive = pattern.replace("}", "}+").replace(")?", ")?+")
    return re.compile(pattern).fullmatch, re.compile(f"(?:{possessive})(?:\x00(?:{possessive}))*+").fullmatch


def _match_mask(values: np.ndarray, present: np.ndarray, pattern: str) -> np.ndarray:
    """Which values match ``pattern`` entirely (missing values do not).

    Fast path: all present values joined by NUL and matched at once (one scan in C); only when that fails (some
    value is bad) is each value matched on its own.
    """
    one, many = _compiled(pattern)
    result = np.zeros(len(values), dtype=bool)
    candidates = values[present]
    if not len(candidates):
        return result
    texts = candidates.tolist()
    try:
        joined = "\x00".join(texts)
    except TypeError:  # a value that is not text
        joined = None
    if joined is not None and joined.count("\x00") == len(texts) - 1 and many(joined) is not None:
        result[present] = True
    else:
        result[present] = [isinstance(text, str) and one(text) is not None for text in texts]
    return result


def _matches(series: pd.Series, pattern: str) -> pd.Series:
    """:func:`_match_mask` for a series."""
    values = series.to_numpy(dtype=object)
    return pd.Series(_match_mask(values, pd.notna(values), pattern), index=series.index)


@functools.cache
def _booked_on(day: date) -> str:
    """A valid UTC time of day on ``day``, in the documented form."""
    return f"{day.isoformat()}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z"


def _longer_than(values: np.ndarray, present: np.ndarray, limit: int) -> np.ndarray:
    """Which texts are longer than ``limit`` (one pass in C when none is)."""
    candidates = values[present].tolist()
    result = np.zeros(len(values), dtype=bool)
    try:
        if not candidates or max(map(len, candidates)) <= limit:
            return result
    except TypeError:
        pass
    result[present] = [not isinstance(text, str) or len(text) > limit for text in candidates]
    return result


def _quoted(series: pd.Series, limit: int = 40) -> pd.Series:
    text = series.astype(object).where(series.notna(), "")
    return text.map(lambda value: repr(str(value) if len(str(value)) <= limit else str(value)[: limit - 1] + "…"))


@functools.cache
def _index(values: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(values), dtype=object)


_CODE_COLUMNS = (("currency", str.upper), ("direction", str.lower), ("status", str.lower), ("channel", str.lower))


def normalise(chunk: pd.DataFrame, known_currencies: Iterable[str]) -> pd.DataFrame:
    """Trim and case-normalise the code columns (``currency`` upper; ``direction``, ``status``, ``channel``
    lower). Only values that are not already valid are touched (no copy when none needs it)."""
    return _normalise(chunk, known_currencies)[0]


def _normalise(chunk: pd.DataFrame, known_currencies: Iterable[str]
               ) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
    """:func:`normalise`, for each code column which values are valid (after normalising), and which rows
    changed."""
    allowed = {"currency": list(known_currencies), "direction": DIRECTIONS, "status": STATUSES, "channel": CHANNELS}
    out = chunk
    valid: dict[str, np.ndarray] = {}
    touched = np.zeros(len(chunk), dtype=bool)
    for column, case in _CODE_COLUMNS:
        index = _index(tuple(allowed[column]))
        values = chunk[column].to_numpy(dtype=object)
        ok = index.get_indexer(values) >= 0
        suspect = ~ok & pd.notna(values)
        if suspect.any():
            rows = chunk.index[suspect]
            fixed = np.array([case(str(v).strip()) for v in values[suspect]], dtype=object)
            changed = fixed != values[suspect]
            if changed.any():
                if out is chunk:
                    out = chunk.copy()
                out.loc[rows[changed], column] = fixed[changed]
                touched[np.flatnonzero(suspect)[changed]] = True
                ok = index.get_indexer(out[column].to_numpy(dtype=object)) >= 0
        valid[column] = ok
    return out, valid, touched


def validate_chunk(chunk: pd.DataFrame, ref: ReferenceData, tracker: DuplicateTracker) -> ChunkResult:
    """Check one chunk of extracted rows (``TRANSACTION_COLUMNS``, text values, ``None``/NaN for NULL).

    Every rule is a vectorised test over the whole chunk (hash lookups where a value must be one of a known set,
    regular expressions and date parsing otherwise); reason texts are built only for the rows that fail.

    :param chunk: the rows in ``row_id`` order (object or string columns).
    :param ref: FX rates, accounts and merchants for the day.
    :param tracker: the day's duplicate tracker (shared by all chunks of the day, in order).
    :return: the good rows (with the parsed ``amount_value``, the positions ``account_pos`` and
        ``merchant_pos`` in ``ref.accounts`` and ``ref.merchants``, and ``normalised``: whether a code was
        normalised, for the transformation), the bad rows with their reasons, and the count per check.
    """
    known_currencies = sorted(set(ref.fx_rates) & set(CURRENCY_DECIMALS))
    s, valid_code, touched = _normalise(chunk, known_currencies)
    n = len(s)
    v = {column: s[column].to_numpy(dtype=object) for column in s.columns}
    present = {column: pd.notna(v[column]) for column in (*REQUIRED, *TEXT_LIMITS, "counterparty_iban", "value_date")}
    messages: list[pd.Series] = []
    failures: dict[str, int] = dict.fromkeys(CHECK_NAMES, 0)

    def fail(check: str, mask: np.ndarray, message: Callable[[pd.Index], Any] | str) -> None:
        """Count the rows of ``mask`` against ``check``; ``message(rows)`` builds their reasons."""
        count = int(mask.sum())
        if not count:
            return
        failures[check] += count
        rows = s.index[mask]
        text = message if isinstance(message, str) else message(rows)
        messages.append(pd.Series(text, index=rows, dtype=object))

    def raw(column: str, rows: pd.Index) -> pd.Series:
        return _quoted(chunk.loc[rows, column])

    all_present = np.logical_and.reduce([present[c] for c in REQUIRED])
    fail("required_fields", ~all_present, lambda rows: "missing " + pd.Series(
        [", ".join(c for c in REQUIRED if not present[c][i]) for i in s.index.get_indexer(rows)], index=rows))

    tid_ok = _match_mask(v["transaction_id"], present["transaction_id"], TRANSACTION_ID_RE)
    fail("transaction_id_format", present["transaction_id"] & ~tid_ok, lambda rows: "transaction_id "
         + raw("transaction_id", rows) + " is not TXN- and 8 to 32 capital letters or digits")

    account_pos = ref.accounts.index.get_indexer(v["account_id"])
    unknown = present["account_id"] & (account_pos < 0)
    account_format_bad = np.zeros(n, dtype=bool)
    if unknown.any():
        account_format_bad[unknown] = ~_match_mask(v["account_id"][unknown], np.ones(int(unknown.sum()), bool),
                                                   ACCOUNT_ID_RE)
    fail("account_id_format", account_format_bad, lambda rows: "account_id " + raw("account_id", rows)
         + " is not ACC- and 5 to 20 capital letters or digits")
    fail("account_known", unknown & ~account_format_bad, lambda rows: "account " + raw("account_id", rows)
         + " is not an account of the core banking system")

    amount_ok = _match_mask(v["amount"], present["amount"], AMOUNT_RE)
    not_decimal = present["amount"] & ~amount_ok
    negative = np.zeros(n, dtype=bool)
    if not_decimal.any():
        negative[not_decimal] = _match_mask(v["amount"][not_decimal], np.ones(int(not_decimal.sum()), bool),
                                            NEGATIVE_AMOUNT_RE)
    fail("amount_decimal", not_decimal & ~negative, lambda rows: "amount " + raw("amount", rows)
         + " is not a decimal number such as 42.50 ('.' as separator, at most 4 decimals)")
    fail("amount_positive", negative, lambda rows: "amount " + raw("amount", rows)
         + " is negative: amounts are absolute, the direction says debit or credit")
    value = pd.to_numeric(pd.Series(np.where(amount_ok, v["amount"], None)), errors="coerce").to_numpy(dtype=float)
    fail("amount_positive", amount_ok & (value == 0), lambda rows: "amount " + raw("amount", rows) + " is zero")
    fail("amount_range", amount_ok & (value >= MAX_AMOUNT), lambda rows: "amount " + raw("amount", rows)
         + f" is not below {MAX_AMOUNT:,}")

    currency = s["currency"]
    known = valid_code["currency"]
    fail("currency_known", present["currency"] & ~known, lambda rows: "currency " + raw("currency", rows)
         + f" is not a known ISO 4217 currency with an FX rate for {ref.day} (known: {', '.join(known_currencies)})")
    places = currency.map(CURRENCY_DECIMALS).fillna(4).to_numpy(dtype=float)
    scaled = np.nan_to_num(value) * 10.0**places
    too_precise = amount_ok & known & (np.abs(scaled - np.round(scaled)) > 1e-6 * np.maximum(1.0, np.abs(scaled)))
    fail("amount_precision", too_precise, lambda rows: "amount " + raw("amount", rows) + " has more decimals than "
         + currency.loc[rows].astype(object) + " has (" + currency.loc[rows].map(CURRENCY_DECIMALS).astype(str) + ")")

    for column, allowed_values, check in (("direction", DIRECTIONS, "direction_valid"),
                                          ("status", STATUSES, "status_valid"),
                                          ("channel", CHANNELS, "channel_valid")):
        fail(check, present[column] & ~valid_code[column],
             lambda rows, column=column, allowed_values=allowed_values: f"{column} " + raw(column, rows)
             + f" is not one of {', '.join(allowed_values)}")

    # Fast path: one regular expression (over the whole chunk) for "a valid time on the business date"; only the
    # rows it refuses are parsed, to tell a malformed timestamp from one on another day.
    on_day = _match_mask(v["booked_at"], present["booked_at"], _booked_on(ref.day))
    booked_ok = on_day.copy()
    outside = np.zeros(n, dtype=bool)
    others = present["booked_at"] & ~on_day
    if others.any():
        parsed = pd.to_datetime(pd.Series(v["booked_at"][others]), format="%Y-%m-%dT%H:%M:%SZ", errors="coerce")
        shaped = _match_mask(v["booked_at"][others], np.ones(int(others.sum()), bool), BOOKED_AT_RE)
        booked_ok[others] = parsed.notna().to_numpy() & shaped  # the parser alone accepts 2026-1-5T9:41:07Z
        outside[others] = booked_ok[others]
    fail("booked_at_timestamp", present["booked_at"] & ~booked_ok, lambda rows: "booked_at " + raw("booked_at", rows)
         + " is not an RFC 3339 UTC timestamp such as 2026-01-05T09:41:07Z")
    fail("booked_at_in_day", outside, lambda rows: "booked_at " + raw("booked_at", rows)
         + f" is not on the business date {ref.day}")

    vd_ok = np.zeros(n, dtype=bool)
    if present["value_date"].any():  # few distinct values: parse each once
        codes, uniques = pd.factorize(v["value_date"][present["value_date"]])
        unique_ok = (pd.to_datetime(pd.Series(uniques, dtype=object), format="%Y-%m-%d", errors="coerce").notna()
                     .to_numpy() & _match_mask(np.asarray(uniques, dtype=object), np.ones(len(uniques), bool), DATE_RE))
        vd_ok[present["value_date"]] = unique_ok[codes]
    fail("value_date_format", present["value_date"] & ~vd_ok, lambda rows: "value_date " + raw("value_date", rows)
         + " is not a date YYYY-MM-DD")

    merchant_pos = ref.merchants.index.get_indexer(v["merchant_id"])
    needs_merchant = _index(MERCHANT_CHANNELS).get_indexer(v["channel"]) >= 0
    fail("merchant_known", needs_merchant & (merchant_pos < 0), lambda rows: "merchant_id "
         + raw("merchant_id", rows) + " is not a known merchant (needed for channel "
         + s.loc[rows, "channel"].astype(object) + ")")

    with_iban = present["counterparty_iban"]
    fail("counterparty_iban_masked", with_iban & ~_match_mask(v["counterparty_iban"], with_iban, IBAN_MASKED_RE),
         lambda rows: "counterparty_iban " + raw("counterparty_iban", rows)
         + " is not a masked IBAN such as DE89**************3000")
    for column, limit in TEXT_LIMITS.items():
        fail("text_lengths", _longer_than(v[column], present[column], limit),
             lambda rows, column=column, limit=limit: f"{column} has " + s.loc[rows, column].astype(str).str.len()
             .astype(str) + f" characters, more than {limit}")

    bad_before_duplicates = np.zeros(n, dtype=bool)
    if messages:
        bad_before_duplicates[s.index.get_indexer(pd.concat(messages).index.unique())] = True
    candidates = ~bad_before_duplicates
    first = np.ones(n, dtype=bool)
    first[candidates] = tracker.first_occurrences(s["transaction_id"][candidates])
    duplicate = candidates & ~first
    fail("unique_transaction_id", duplicate, lambda rows: "transaction_id " + raw("transaction_id", rows)
         + " appears in an earlier row of this export")

    bad_mask = bad_before_duplicates | duplicate
    if bad_mask.any():
        reasons = pd.concat(messages).groupby(level=0, sort=False).agg("; ".join)
        bad = chunk[bad_mask].copy()
        bad["reasons"] = reasons.reindex(bad.index).to_numpy()
        good = s[~bad_mask].copy()
    else:
        bad = chunk.iloc[0:0].assign(reasons=pd.Series(dtype=object))
        good = s.copy(deep=False)
    keep = ~bad_mask
    good["amount_value"] = value[keep]
    good["account_pos"] = account_pos[keep]
    good["merchant_pos"] = merchant_pos[keep]
    good["normalised"] = touched[keep]
    return ChunkResult(good=good, bad=bad, failures=failures)


def describe_check(name: str) -> str:
    """The description of check ``name``."""
    for check in CHECKS:
        if check.name == name:
            return check.description
    raise KeyError(name)

