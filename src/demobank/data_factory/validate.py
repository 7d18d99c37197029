"""Validation of the core banking export's transactions, one chunk at a time (pandas on Arrow, vectorised).

Every row is checked against every rule of :data:`CHECKS`; a row that breaks one or more is *bad*: it is kept
with all its reasons (``"amount '12,50' is not a decimal number such as 42.50; …"``) for the quarantine, and
each rule counts the rows it rejected (the data quality record shows these counts per check).

A chunk is a pandas DataFrame of text columns. Each rule is one Arrow compute kernel over a whole column (regular
expressions with RE2, hash lookups for the values that must be one of a known set, lengths), in C++ and without the
GIL, whether the columns are Arrow-backed (pandas' ``str`` dtype, as :mod:`~demobank.data_factory.transactions`
extracts them) or plain Python objects (converted once); only the rows that fail are looked at one by one, to
write their reasons.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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

    @functools.cached_property
    def account_ids(self) -> pa.Array:
        """The accounts' ids (Arrow), in the order of ``accounts``: the value set of the lookups."""
        return to_arrow(self.accounts.index.to_series())

    @functools.cached_property
    def account_rate_positions(self) -> np.ndarray:
        """The position of each account's currency in ``fx_rates`` (``-1``: no rate), in the order of
        ``accounts``."""
        return positions(to_arrow(self.accounts["currency"]), pa.array(list(self.fx_rates), type=pa.large_string()))

    @functools.cached_property
    def merchant_ids(self) -> pa.Array:
        """The merchants' ids (Arrow), in the order of ``merchants``."""
        return to_arrow(self.merchants.index.to_series())


# -- Arrow helpers -------------------------------------------------------------------------------------------------

NOT_TEXT = "\x00"
"""What :func:`to_arrow` puts before a value that is not text (no rule accepts a NUL character)."""


def to_arrow(values: pd.Series | pd.Index | np.ndarray | pa.Array | pa.ChunkedArray, *, text_only: bool = True
             ) -> pa.Array:
    """A column of text as one Arrow ``large_string`` array (null for ``None``/NaN); zero-copy for a pandas ``str``
    column backed by Arrow.

    A value that is not text (possible from a SQLite source, whose columns take any type) becomes a text no rule
    accepts (it contains a NUL character), so it fails every check it meets; the reasons quote the original value.
    With ``text_only=False`` it becomes its ``str()`` instead (for columns no rule checks, such as ``row_id``).
    """
    if isinstance(values, pa.ChunkedArray):
        array: pa.Array | pa.ChunkedArray = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    elif isinstance(values, pa.Array):
        array = values
    elif isinstance(getattr(values, "dtype", None), pd.StringDtype | pd.ArrowDtype) and \
            getattr(values.dtype, "storage", "pyarrow") == "pyarrow":
        array = pa.array(values)
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
    else:
        objects = np.asarray(values, dtype=object)
        if pd.api.types.infer_dtype(objects, skipna=True) in ("string", "empty"):
            array = pa.array(objects, type=pa.large_string(), from_pandas=True)
        else:
            nulls = pd.isna(objects)
            cleaned = [None if null else value if isinstance(value, str) else f"{NOT_TEXT}{value!r}" if text_only
                       else str(value)
                       for value, null in zip(objects.tolist(), nulls.tolist(), strict=True)]
            array = pa.array(cleaned, type=pa.large_string())
    if array.type != pa.large_string():
        array = array.cast(pa.large_string())
    return array


def as_bool(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean array as a numpy one (null is ``False``)."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def positions(values: pa.Array, value_set: pa.Array) -> np.ndarray:
    """The position of each value in ``value_set`` (``-1`` when it is not there or null), as int64."""
    found = pc.index_in(values, value_set=value_set)
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


@functools.cache
def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


def fullmatch(values: pa.Array, pattern: str) -> np.ndarray:
    """Which values match ``pattern`` entirely (RE2, in C++; null values do not)."""
    if not len(values):
        return np.zeros(0, dtype=bool)
    return as_bool(pc.match_substring_regex(values, _anchored(pattern)))


def _match_mask(values: np.ndarray, present: np.ndarray, pattern: str) -> np.ndarray:
    """Which of ``values`` (an object array) match ``pattern`` entirely (values where ``present`` is false, and
    values that are not text, do not)."""
    result = np.zeros(len(values), dtype=bool)
    if present.any():
        result[present] = fullmatch(to_arrow(np.asarray(values, dtype=object)[present]), pattern)
    return result


@dataclass
class DuplicateTracker:
    """Remembers (as 64-bit hashes, in a few sorted arrays) the transaction ids kept so far in a day."""

    _runs: list[np.ndarray] = field(default_factory=list)  # sorted uint64 hashes
    _count: int = 0

    def first_occurrences(self, ids: pd.Series | pa.Array) -> np.ndarray:
        """Mark which of ``ids`` (in row order, none null) are seen for the first time, and remember them."""
        hashes = hash_texts(to_arrow(ids))
        if not len(hashes):
            return np.zeros(0, dtype=bool)
        first = ~pd.Series(hashes).duplicated().to_numpy()
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        seen = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:  # sorted queries into sorted runs: sequential memory access
            where = np.minimum(np.searchsorted(run, ordered), len(run) - 1)
            seen |= run[where] == ordered
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


_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (a bijection of 64-bit words that spreads every bit)."""
    h = (h ^ (h >> np.uint64(30))) * _MIX_1
    h = (h ^ (h >> np.uint64(27))) * _MIX_2
    return h ^ (h >> np.uint64(31))


HASH_WIDTH = 256
"""Texts up to this many bytes are hashed together (an array of n x 256 bytes at most); longer ones one by one."""


def hash_texts(values: pa.Array) -> np.ndarray:
    """A 64-bit hash of each text, vectorised over the UTF-8 bytes; it depends on the text alone (not on the other
    texts of the array), so the same id hashes alike in every chunk.

    The text's length is mixed in first, then each of its 8-byte words (the last one padded with NUL bytes) with a
    bijective mix: two texts of the same length that differ in a single word never collide.
    """
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    if values.null_count:
        raise ValueError("hash_texts: null values have no hash")
    lengths = np.asarray(pc.binary_length(values).to_numpy(zero_copy_only=False), dtype=np.int64)
    long = lengths > HASH_WIDTH
    if long.any():  # rare: each long text on its own, the short ones together
        hashes = np.empty(n, dtype=np.uint64)
        for position in np.flatnonzero(long).tolist():
            hashes[position] = _hash_block(values.slice(position, 1), lengths[position:position + 1])[0]
        short = np.flatnonzero(~long)
        if len(short):
            hashes[short] = hash_texts(values.take(pa.array(short)))
        return hashes
    return _hash_block(values, lengths)


def _hash_block(values: pa.Array, lengths: np.ndarray) -> np.ndarray:
    n = len(values)
    width = max(8, -(-int(lengths.max()) // 8) * 8)
    if pc.all(pc.string_is_ascii(values)).as_py():  # padded in C++: one contiguous block of n * width bytes
        padded = pc.utf8_rpad(values, width=width, padding="\x00").cast(pa.large_binary())
        first = int(np.frombuffer(padded.buffers()[1], dtype=np.int64)[padded.offset])
        data = np.frombuffer(padded.buffers()[2], dtype=np.uint8)
        words = data[first:first + n * width].view(np.uint64).reshape(n, width // 8)
    else:
        offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset:values.offset + n + 1]
        raw = np.frombuffer(values.buffers()[2], dtype=np.uint8)
        column = np.arange(width, dtype=np.int64)
        inside = column[None, :] < lengths[:, None]
        block = np.zeros((n, width), dtype=np.uint8)
        block[inside] = raw[(offsets[:-1, None] + column[None, :])[inside]]
        words = block.view(np.uint64)
    used = -(-lengths // 8)  # the words of each text (the others are padding: not mixed in)
    h = _mix(lengths.astype(np.uint64) * _MULTIPLIER)
    for j in range(words.shape[1]):
        h = np.where(j < used, _mix(h ^ words[:, j]), h)
    return h


# -- the checks ----------------------------------------------------------------------------------------------------


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
def _booked_on(day: date) -> str:
    """A valid UTC time of day on ``day``, in the documented form."""
    return f"{day.isoformat()}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z"


def _quoted(series: pd.Series, limit: int = 40) -> pd.Series:
    text = series.astype(object).where(series.notna(), "")
    return text.map(lambda value: repr(str(value) if len(str(value)) <= limit else str(value)[: limit - 1] + "…"))


@functools.cache
def _value_set(values: tuple[str, ...]) -> pa.Array:
    return pa.array(list(values), type=pa.large_string())


_UNCHECKED = ("row_id", "business_date")
_CODE_COLUMNS = (("currency", str.upper), ("direction", str.lower), ("status", str.lower), ("channel", str.lower))
_CURRENCY_CODES = tuple(CURRENCY_DECIMALS)
_CURRENCY_PLACES = np.array([*CURRENCY_DECIMALS.values(), 4], dtype=float)  # position -1 (unknown): 4


def normalise(chunk: pd.DataFrame, known_currencies: Iterable[str]) -> pd.DataFrame:
    """Trim and case-normalise the code columns (``currency`` upper; ``direction``, ``status``, ``channel``
    lower). Only values that are not already valid are touched (no copy when none needs it)."""
    columns, _valid, touched = _normalise({c: to_arrow(chunk[c]) for c, _ in _CODE_COLUMNS}, known_currencies)
    if not touched.any():
        return chunk
    out = chunk.copy()
    for column, _case in _CODE_COLUMNS:
        out[column] = pd.Series(columns[column].to_pandas().to_numpy(), index=chunk.index).astype(chunk[column].dtype)
    return out


def _normalise(columns: dict[str, pa.Array], known_currencies: Iterable[str]
               ) -> tuple[dict[str, pa.Array], dict[str, np.ndarray], np.ndarray]:
    """The code columns normalised, for each which values are valid (after normalising), and which rows changed."""
    allowed = {"currency": tuple(known_currencies), "direction": DIRECTIONS, "status": STATUSES, "channel": CHANNELS}
    out = dict(columns)
    valid: dict[str, np.ndarray] = {}
    touched = np.zeros(len(next(iter(columns.values()))), dtype=bool)
    for column, case in _CODE_COLUMNS:
        values = columns[column]
        value_set = _value_set(allowed[column])
        ok = as_bool(pc.is_in(values, value_set=value_set))
        suspect = ~ok & as_bool(pc.is_valid(values))
        if suspect.any():
            where = np.flatnonzero(suspect)
            before = values.take(pa.array(where)).to_pylist()
            fixed = [case(str(value).strip()) for value in before]
            changed = np.array([a != b for a, b in zip(fixed, before, strict=True)], dtype=bool)
            if changed.any():
                mask = np.zeros(len(values), dtype=bool)
                mask[where[changed]] = True
                replacement = pa.array([f for f, c in zip(fixed, changed.tolist(), strict=True) if c],
                                       type=pa.large_string())
                values = pc.replace_with_mask(values, pa.array(mask), replacement)
                out[column] = values
                touched[where[changed]] = True
                ok = as_bool(pc.is_in(values, value_set=value_set))
        valid[column] = ok
    return out, valid, touched


def _as_series(values: pa.Array, index: pd.Index) -> pd.Series:
    """An Arrow text array as a pandas ``str`` column (zero-copy)."""
    series = values.to_pandas()
    series.index = index
    return series


def validate_chunk(chunk: pd.DataFrame, ref: ReferenceData, tracker: DuplicateTracker) -> ChunkResult:
    """Check one chunk of extracted rows (``TRANSACTION_COLUMNS``, text values, ``None``/NaN for NULL).

    Every rule is a vectorised test over the whole chunk (Arrow kernels: hash lookups where a value must be one of a
    known set, RE2 regular expressions and lengths otherwise); reason texts are built only for the rows that fail.

    :param chunk: the rows in ``row_id`` order (``str`` or object columns).
    :param ref: FX rates, accounts and merchants for the day.
    :param tracker: the day's duplicate tracker (shared by all chunks of the day, in order).
    :return: the good rows (Arrow-backed ``str`` columns with the normalised codes, the parsed ``amount_value``,
        the positions ``account_pos`` and ``merchant_pos`` in ``ref.accounts`` and ``ref.merchants``, and
        ``normalised``: whether a code was normalised, for the transformation), the bad rows (as extracted) with
        their reasons, and the count per check.
    """
    known_currencies = sorted(set(ref.fx_rates) & set(CURRENCY_DECIMALS))
    n = len(chunk)
    a = {column: to_arrow(chunk[column], text_only=column not in _UNCHECKED) for column in chunk.columns}
    codes, valid_code, touched = _normalise({c: a[c] for c, _ in _CODE_COLUMNS}, known_currencies)
    a.update(codes)
    present = {column: as_bool(pc.is_valid(a[column]))
               for column in (*REQUIRED, *TEXT_LIMITS, "counterparty_iban", "value_date", "merchant_id")}
    messages: list[pd.Series] = []
    failures: dict[str, int] = dict.fromkeys(CHECK_NAMES, 0)

    def fail(check: str, mask: np.ndarray, message: Callable[[pd.Index], Any] | str) -> None:
        """Count the rows of ``mask`` against ``check``; ``message(rows)`` builds their reasons."""
        count = int(mask.sum())
        if not count:
            return
        failures[check] += count
        rows = chunk.index[mask]
        text = message if isinstance(message, str) else message(rows)
        messages.append(pd.Series(text, index=rows, dtype=object))

    def raw(column: str, rows: pd.Index) -> pd.Series:
        return _quoted(chunk.loc[rows, column])

    def normalised(column: str, rows: pd.Index) -> pd.Series:
        return pd.Series(a[column].take(pa.array(chunk.index.get_indexer(rows))).to_pylist(), index=rows,
                         dtype=object)

    all_present = np.logical_and.reduce([present[c] for c in REQUIRED])
    fail("required_fields", ~all_present, lambda rows: "missing " + pd.Series(
        [", ".join(c for c in REQUIRED if not present[c][i]) for i in chunk.index.get_indexer(rows)], index=rows))

    tid_ok = fullmatch(a["transaction_id"], TRANSACTION_ID_RE)
    fail("transaction_id_format", present["transaction_id"] & ~tid_ok, lambda rows: "transaction_id "
         + raw("transaction_id", rows) + " is not TXN- and 8 to 32 capital letters or digits")

    account_pos = positions(a["account_id"], ref.account_ids)
    unknown = present["account_id"] & (account_pos < 0)
    account_format_bad = unknown & ~fullmatch(a["account_id"], ACCOUNT_ID_RE) if unknown.any() else unknown
    fail("account_id_format", account_format_bad, lambda rows: "account_id " + raw("account_id", rows)
         + " is not ACC- and 5 to 20 capital letters or digits")
    fail("account_known", unknown & ~account_format_bad, lambda rows: "account " + raw("account_id", rows)
         + " is not an account of the core banking system")

    amount = a["amount"]
    amount_ok = fullmatch(amount, AMOUNT_RE)
    not_decimal = present["amount"] & ~amount_ok
    negative = not_decimal & fullmatch(amount, NEGATIVE_AMOUNT_RE) if not_decimal.any() else not_decimal
    fail("amount_decimal", not_decimal & ~negative, lambda rows: "amount " + raw("amount", rows)
         + " is not a decimal number such as 42.50 ('.' as separator, at most 4 decimals)")
    fail("amount_positive", negative, lambda rows: "amount " + raw("amount", rows)
         + " is negative: amounts are absolute, the direction says debit or credit")
    parsed = pc.cast(pc.if_else(pa.array(amount_ok), amount, pa.scalar("0", pa.large_string())), pa.float64())
    value = np.where(amount_ok, np.asarray(parsed.to_numpy(zero_copy_only=False), dtype=float), np.nan)
    fail("amount_positive", amount_ok & (value == 0), lambda rows: "amount " + raw("amount", rows) + " is zero")
    fail("amount_range", amount_ok & (value >= MAX_AMOUNT), lambda rows: "amount " + raw("amount", rows)
         + f" is not below {MAX_AMOUNT:,}")

    known = valid_code["currency"]
    fail("currency_known", present["currency"] & ~known, lambda rows: "currency " + raw("currency", rows)
         + f" is not a known ISO 4217 currency with an FX rate for {ref.day} (known: {', '.join(known_currencies)})")
    places = _CURRENCY_PLACES[positions(a["currency"], _value_set(_CURRENCY_CODES))]
    scaled = np.nan_to_num(value) * 10.0**places
    too_precise = amount_ok & known & (np.abs(scaled - np.round(scaled)) > 1e-6 * np.maximum(1.0, np.abs(scaled)))
    fail("amount_precision", too_precise, lambda rows: "amount " + raw("amount", rows) + " has more decimals than "
         + normalised("currency", rows) + " has (" + normalised("currency", rows).map(CURRENCY_DECIMALS).astype(str)
         + ")")

    for column, allowed_values, check in (("direction", DIRECTIONS, "direction_valid"),
                                          ("status", STATUSES, "status_valid"),
                                          ("channel", CHANNELS, "channel_valid")):
        fail(check, present[column] & ~valid_code[column],
             lambda rows, column=column, allowed_values=allowed_values: f"{column} " + raw(column, rows)
             + f" is not one of {', '.join(allowed_values)}")

    # One regular expression (over the whole chunk) for "a valid time on the business date"; only the rows it
    # refuses are parsed, to tell a malformed timestamp from one on another day.
    on_day = fullmatch(a["booked_at"], _booked_on(ref.day))
    booked_ok = on_day.copy()
    outside = np.zeros(n, dtype=bool)
    others = present["booked_at"] & ~on_day
    if others.any():
        where = np.flatnonzero(others)
        texts = a["booked_at"].take(pa.array(where))
        parsed_at = pd.to_datetime(pd.Series(texts.to_pylist(), dtype=object), format="%Y-%m-%dT%H:%M:%SZ",
                                   errors="coerce")
        fine = parsed_at.notna().to_numpy() & fullmatch(texts, BOOKED_AT_RE)  # the parser accepts 2026-1-5T9:41:07Z
        booked_ok[where] = fine
        outside[where] = fine
    fail("booked_at_timestamp", present["booked_at"] & ~booked_ok, lambda rows: "booked_at " + raw("booked_at", rows)
         + " is not an RFC 3339 UTC timestamp such as 2026-01-05T09:41:07Z")
    fail("booked_at_in_day", outside, lambda rows: "booked_at " + raw("booked_at", rows)
         + f" is not on the business date {ref.day}")

    vd_ok = np.zeros(n, dtype=bool)
    if present["value_date"].any():  # few distinct values: parse each once
        encoded = pc.dictionary_encode(a["value_date"])
        uniques = encoded.dictionary
        unique_ok = (pd.to_datetime(pd.Series(uniques.to_pylist(), dtype=object), format="%Y-%m-%d",
                                    errors="coerce").notna().to_numpy() & fullmatch(uniques, DATE_RE))
        indices = np.asarray(pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        vd_ok = unique_ok[indices] & present["value_date"]
    fail("value_date_format", present["value_date"] & ~vd_ok, lambda rows: "value_date " + raw("value_date", rows)
         + " is not a date YYYY-MM-DD")

    merchant_pos = positions(a["merchant_id"], ref.merchant_ids)
    needs_merchant = as_bool(pc.is_in(a["channel"], value_set=_value_set(MERCHANT_CHANNELS)))
    fail("merchant_known", needs_merchant & (merchant_pos < 0), lambda rows: "merchant_id "
         + raw("merchant_id", rows) + " is not a known merchant (needed for channel "
         + normalised("channel", rows) + ")")

    with_iban = present["counterparty_iban"]
    fail("counterparty_iban_masked", with_iban & ~fullmatch(a["counterparty_iban"], IBAN_MASKED_RE),
         lambda rows: "counterparty_iban " + raw("counterparty_iban", rows)
         + " is not a masked IBAN such as DE89**************3000")
    for column, limit in TEXT_LIMITS.items():
        lengths = np.asarray(pc.fill_null(pc.utf8_length(a[column]), 0).to_numpy(zero_copy_only=False))
        not_text = as_bool(pc.starts_with(a[column], NOT_TEXT))  # a number, say: refused too
        fail("text_lengths", (lengths > limit) | not_text,
             lambda rows, column=column, limit=limit: f"{column} has "
             + chunk.loc[rows, column].astype(object).astype(str).str.len().astype(str)
             + f" characters, more than {limit}")

    bad_before_duplicates = np.zeros(n, dtype=bool)
    if messages:
        bad_before_duplicates[chunk.index.get_indexer(pd.concat(messages).index.unique())] = True
    candidates = ~bad_before_duplicates
    first = np.ones(n, dtype=bool)
    if candidates.any():
        first[candidates] = tracker.first_occurrences(a["transaction_id"].filter(pa.array(candidates)))
    duplicate = candidates & ~first
    fail("unique_transaction_id", duplicate, lambda rows: "transaction_id " + raw("transaction_id", rows)
         + " appears in an earlier row of this export")

    bad_mask = bad_before_duplicates | duplicate
    keep = ~bad_mask
    if bad_mask.any():
        reasons = pd.concat(messages).groupby(level=0, sort=False).agg("; ".join)
        bad = chunk[bad_mask].copy()
        bad["reasons"] = reasons.reindex(bad.index).to_numpy()
    else:
        bad = chunk.iloc[0:0].assign(reasons=pd.Series(dtype=object))
    kept = pa.array(keep) if bad_mask.any() else None
    index = chunk.index[keep] if kept is not None else chunk.index
    good = pd.DataFrame({column: _as_series(values.filter(kept) if kept is not None else values, index)
                         for column, values in a.items()}, index=index)
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

