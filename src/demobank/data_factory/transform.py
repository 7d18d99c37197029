"""Transformations of validated transactions (pandas on Arrow, vectorised, one chunk at a time).

* **Currency normalisation**: every amount also in euros (``fx_rate_eur``: euros per unit of the transaction's
  currency on the business day; ``amount_eur`` rounded to cents) and in the account's currency
  (``amount_account``, converted through the euro when the card was used abroad, rounded to that currency's
  minor unit).
* **Merchant categories**: the merchant's name, city, country and ISO 18245 merchant category code (MCC), and a
  spending category from the MCC (:func:`category_of`; transactions without a merchant get one from their
  channel: ``bills``, ``rent_and_savings``, ``income``, ``transfers``, ``cash``).
* **Daily balances per account**: booked debits and credits per account, summed across chunks in integer minor
  units (:class:`Movements`), then opening and closing balances (:func:`daily_balances`).

Amounts are handled as integer units of 1/10,000 (the schema's four decimals) or of the currency's minor unit,
never as binary floats that get summed. Lookups (rates, categories) and number formatting are Arrow kernels over
whole columns; the pandas columns stay Arrow-backed, so no row becomes a Python object.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from demobank.data_factory.validate import (
    CURRENCY_DECIMALS,
    MERCHANT_CHANNELS,
    ReferenceData,
    as_bool,
    positions,
    to_arrow,
)
from demobank.data_factory.warehouse import FACT_COLUMNS

AMOUNT_SCALE = 10_000
"""Amounts are carried as integer units of 1/10,000 of the currency's major unit."""

MCC_CATEGORIES: dict[str, str] = {
    "5411": "groceries", "5422": "groceries", "5441": "groceries", "5451": "groceries", "5499": "groceries",
    "5811": "dining", "5812": "dining", "5813": "dining", "5814": "dining",
    "5541": "fuel", "5542": "fuel", "5983": "fuel",
    "4111": "transport", "4112": "transport", "4121": "transport", "4131": "transport", "4789": "transport",
    "7523": "transport",
    "4511": "travel", "4722": "travel", "7011": "travel", "7512": "travel",
    "5912": "health", "8011": "health", "8021": "health", "8062": "health", "8099": "health",
    "5311": "shopping", "5691": "shopping", "5651": "shopping", "5732": "shopping", "5942": "shopping",
    "5999": "shopping", "5977": "shopping", "5399": "shopping",
    "5815": "entertainment", "5816": "entertainment", "7832": "entertainment", "7922": "entertainment",
    "7997": "entertainment",
    "4814": "utilities", "4899": "utilities", "4900": "utilities",
    "6010": "cash", "6011": "cash",
    "6300": "insurance", "5960": "insurance",
}  # fmt: skip
"""Spending category of common MCCs (ISO 18245)."""

_MCC_RANGES: tuple[tuple[int, int, str], ...] = (
    (3000, 3350, "travel"),  # airlines
    (3351, 3500, "travel"),  # car rental
    (3501, 3999, "travel"),  # lodging
    (4000, 4799, "transport"),
    (4800, 4999, "utilities"),
    (5000, 5599, "shopping"),
    (5600, 5699, "shopping"),
    (5700, 5799, "shopping"),
    (5800, 5899, "dining"),
    (5900, 5999, "shopping"),
    (6000, 6999, "financial"),
    (7000, 7299, "services"),
    (7300, 7999, "entertainment"),
    (8000, 8999, "health"),
    (9000, 9999, "government"),
)
_CHANNEL_CATEGORIES = {"direct_debit": "bills", "standing_order": "rent_and_savings", "incoming_transfer": "income",
                       "mobile_app": "transfers", "online_banking": "transfers", "atm": "cash"}

OUTPUT_COLUMNS: tuple[str, ...] = FACT_COLUMNS
"""The columns :func:`transform_chunk` produces (the warehouse's ``transactions`` without the load keys)."""
DERIVED_COLUMNS: tuple[str, ...] = ("category", "fx_rate_eur", "amount_eur", "amount_account")
"""The columns the transformation computes; the others are the export's (validated, normalised) values."""


def category_of(mcc: pd.Series, channel: pd.Series) -> pd.Series:
    """The spending category of each row: from the MCC (exact code, then ISO 18245 range), else the channel."""
    exact = mcc.map(MCC_CATEGORIES)
    codes = pd.to_numeric(mcc, errors="coerce")
    ranged = pd.Series(None, index=mcc.index, dtype=object)
    for low, high, name in _MCC_RANGES:
        ranged = ranged.where(~((codes >= low) & (codes <= high)), name)
    by_channel = channel.map(_CHANNEL_CATEGORIES)
    return exact.astype(object).fillna(ranged).fillna(by_channel).fillna("other")


def merchant_categories(merchants: pd.DataFrame) -> pd.Series:
    """The spending category of each merchant (from its MCC), computed once per merchant, not per transaction."""
    return category_of(merchants["mcc"].astype(object), pd.Series("card_present", index=merchants.index))


def amount_units(amount: pd.Series) -> np.ndarray:
    """Validated decimal strings (at most 4 decimals, below 10^11) as integer units of 1/10,000."""
    return np.round(pd.to_numeric(amount).to_numpy(dtype=float) * AMOUNT_SCALE).astype(np.int64)


def format_units(units: np.ndarray, decimals: np.ndarray | int, scale_decimals: int = 4) -> np.ndarray:
    """Integer units (of 10^-scale_decimals) as decimal strings with ``decimals`` places (vectorised)."""
    return format_units_arrow(units, decimals, scale_decimals).to_numpy(zero_copy_only=False).astype(object)


_DOT = pa.scalar(".", pa.large_string())
_MINUS = pa.scalar("-", pa.large_string())
_EMPTY = pa.scalar("", pa.large_string())


def format_units_arrow(units: np.ndarray, decimals: np.ndarray | int, scale_decimals: int = 4) -> pa.Array:
    """:func:`format_units` as an Arrow ``large_string`` array (formatted by Arrow kernels, no Python objects)."""
    units = np.asarray(units, dtype=np.int64)
    decimals = np.broadcast_to(np.asarray(decimals, dtype=np.int64), units.shape)
    parts: list[pa.Array] = []
    rows_of: list[np.ndarray] = []
    for places in np.unique(decimals).tolist():
        rows = np.flatnonzero(decimals == places)
        value = units[rows] // (10 ** (scale_decimals - places))
        negative = value < 0
        whole, frac = np.divmod(np.abs(value), 10**places)
        text = pc.cast(pa.array(whole), pa.large_string())
        if places:
            digits = pc.utf8_lpad(pc.cast(pa.array(frac), pa.large_string()), width=places, padding="0")
            text = pc.binary_join_element_wise(text, digits, _DOT)
        if negative.any():
            text = pc.if_else(pa.array(negative), pc.binary_join_element_wise(_MINUS, text, _EMPTY), text)
        parts.append(text)
        rows_of.append(rows)
    if not parts:
        return pa.array([], type=pa.large_string())
    if len(parts) == 1:
        return parts[0]
    order = np.concatenate(rows_of)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return pa.concat_arrays(parts).take(pa.array(inverse))


class Movements:
    """Booked debits and credits per account (integer units of 1/10,000 of the account's currency), summed
    over the chunks of a day, in arrays indexed like the source's accounts: memory grows with the number of
    accounts, not with the number of rows.

    :param account_ids: the ids of the accounts (``ReferenceData.accounts.index``), in order.
    """

    def __init__(self, account_ids: pd.Index) -> None:
        self.account_ids = account_ids
        size = len(account_ids)
        self.debits = np.zeros(size, dtype=np.int64)
        self.credits = np.zeros(size, dtype=np.int64)
        self.booked_count = np.zeros(size, dtype=np.int64)

    def add(self, account_pos: np.ndarray, units: np.ndarray, credit: np.ndarray, booked: np.ndarray) -> None:
        """Add the booked rows of one chunk (``account_pos``: positions in ``account_ids``)."""
        debit_rows = booked & ~credit
        credit_rows = booked & credit
        np.add.at(self.debits, account_pos[debit_rows], units[debit_rows])
        np.add.at(self.credits, account_pos[credit_rows], units[credit_rows])
        np.add.at(self.booked_count, account_pos[booked], 1)

    @property
    def totals(self) -> pd.DataFrame:
        """The accounts with booked activity: ``debits``, ``credits``, ``booked_count``, indexed by account id."""
        active = self.booked_count > 0
        return pd.DataFrame(
            {"debits": self.debits[active], "credits": self.credits[active],
             "booked_count": self.booked_count[active]},
            index=pd.Index(self.account_ids[active], name="account_id", dtype=object),
        )


@dataclass(frozen=True)
class Transformed:
    """One chunk, transformed: the warehouse rows as pandas columns (``OUTPUT_COLUMNS``; text, Arrow-backed ``str``
    columns where the rows came so, NaN for NULL), and the amounts as the integers they were computed as.

    :ivar columns: every output column.
    :ivar units: ``amount`` and ``amount_account`` in units of 1/10,000, ``amount_eur`` in cents, ``fx_rate_eur`` in
        units of 10^-8 (int64 arrays; the same values as the texts of ``columns``), for writers that send numbers.
    """

    columns: dict[str, pd.Series]
    units: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["transaction_id"])


def _series(values: pa.Array, index: pd.Index) -> pd.Series:
    series = values.to_pandas()
    series.index = index
    return series


def transform_chunk(good: pd.DataFrame, ref: ReferenceData, movements: Movements) -> Transformed:
    """Enrich and normalise the validated rows of one chunk; add their booked amounts to ``movements``.

    Values stay text where they are already valid text (ids, the amount as exported, timestamps); computed
    numbers are formatted once, by Arrow kernels. Missing values are NaN.

    :param good: rows that passed :func:`demobank.data_factory.validate.validate_chunk` (normalised values).
    :param ref: FX rates, accounts and merchants for the day.
    :param movements: the day's running per-account totals.
    """
    index = good.index
    currency = to_arrow(good["currency"])
    account_pos = (good["account_pos"].to_numpy(dtype=np.int64) if "account_pos" in good
                   else positions(to_arrow(good["account_id"]), ref.account_ids))
    rates = {code: float(rate) for code, rate in ref.fx_rates.items()}
    codes = pa.array(list(rates), type=pa.large_string())
    rate_values = np.array([*rates.values(), np.nan])
    currency_pos = positions(currency, codes)
    rate = rate_values[currency_pos]  # position -1 (no rate: validation refused the row) takes NaN
    account_currency_pos = ref.account_rate_positions[account_pos]
    account_rate = rate_values[account_currency_pos]
    units = (np.round(good["amount_value"].to_numpy(dtype=float) * AMOUNT_SCALE).astype(np.int64)
             if "amount_value" in good else amount_units(good["amount"]))
    cents = np.rint(units / AMOUNT_SCALE * rate * 100)  # = numpy's round(…, 2), in whole cents
    amount_eur = format_units_arrow(cents.astype(np.int64), 2, scale_decimals=2)

    # In the account's currency: the amount itself, or converted through the euro (cards used abroad).
    amount_text = to_arrow(good["amount"])
    same = (currency_pos == account_currency_pos) & (currency_pos >= 0)
    account_units = units.copy()
    amount_account = amount_text
    if not same.all():
        other = ~same
        account_codes = ref.accounts["currency"].to_numpy(dtype=object)[account_pos[other]]
        places = pd.Series(account_codes).map(CURRENCY_DECIMALS).fillna(2).to_numpy(dtype=np.int64)
        step = 10 ** (4 - places)
        converted = (np.round(units[other] * (rate[other] / account_rate[other]) / step) * step).astype(np.int64)
        account_units[other] = converted
        amount_account = pc.replace_with_mask(amount_text, pa.array(other), format_units_arrow(converted, places))
    credit = as_bool(pc.equal(to_arrow(good["direction"]), "credit"))
    booked = as_bool(pc.equal(to_arrow(good["status"]), "booked"))
    movements.add(account_pos, account_units, credit, booked)

    channel = to_arrow(good["channel"])
    with_merchant = as_bool(pc.is_in(channel, value_set=pa.array(MERCHANT_CHANNELS, type=pa.large_string())))
    merchant_pos = (good["merchant_pos"].to_numpy(dtype=np.int64) if "merchant_pos" in good
                    else positions(to_arrow(good["merchant_id"]), ref.merchant_ids))
    merchant_pos = np.where(with_merchant, merchant_pos, -1)
    has_merchant = merchant_pos >= 0

    categories = to_arrow(ref.merchants["category"] if "category" in ref.merchants
                          else merchant_categories(ref.merchants))
    channel_pos = positions(channel, _CHANNEL_KEYS)
    by_channel = _CHANNEL_VALUES.take(pa.array(np.where(channel_pos < 0, len(_CHANNEL_CATEGORIES), channel_pos)))
    category = (pc.if_else(pa.array(has_merchant), categories.take(pa.array(np.maximum(merchant_pos, 0))),
                           by_channel) if len(categories) else by_channel)
    rate_texts = [f"{value:.8f}" for value in rates.values()]
    rate_text = pa.array([*rate_texts, None], type=pa.large_string())
    rate_units = np.array([*(int(Decimal(text).scaleb(8)) for text in rate_texts), 0], dtype=np.int64)
    rate_pos = np.where(currency_pos < 0, len(rates), currency_pos)

    columns = {name: good[source] for name, source in _SOURCE_NAMES.items()}
    columns.update({
        "category": _series(category, index),
        "fx_rate_eur": _series(rate_text.take(pa.array(rate_pos)), index),
        "amount_eur": _series(amount_eur, index),
        "amount_account": _series(amount_account, index),
    })  # fmt: skip
    numbers = {"amount": units, "amount_account": account_units, "amount_eur": cents.astype(np.int64),
               "fx_rate_eur": rate_units[rate_pos]}
    return Transformed(columns, numbers)


_SOURCE_NAMES = {name: ("row_id" if name == "source_row_id" else name) for name in FACT_COLUMNS[:15]}
_CHANNEL_KEYS = pa.array(list(_CHANNEL_CATEGORIES), type=pa.large_string())
_CHANNEL_VALUES = pa.array([*_CHANNEL_CATEGORIES.values(), "other"], type=pa.large_string())  # "other": no channel


def daily_balances(movements: Movements, previous_closing: pd.Series, accounts: pd.DataFrame) -> pd.DataFrame:
    """End-of-day balances of the accounts with booked activity.

    :param movements: the day's totals per account.
    :param previous_closing: the latest earlier closing balance per account (decimal strings or numbers), for
        the accounts that have one in the warehouse.
    :param accounts: the source's accounts (``currency``, ``opening_balance`` at 2026-01-01), indexed by id.
    :return: indexed by ``account_id``: ``currency``, ``opening_balance``, ``debits``, ``credits``,
        ``closing_balance`` (decimal strings in the account's currency) and ``booked_count``.
    """
    totals = movements.totals
    ids = totals.index
    info = accounts.reindex(ids)
    decimals = info["currency"].map(CURRENCY_DECIMALS).fillna(2).to_numpy(dtype=np.int64)
    source_opening = amount_units(info["opening_balance"].fillna("0"))
    previous = previous_closing.reindex(ids)
    previous_units = np.round(pd.to_numeric(previous, errors="coerce").to_numpy(dtype=float) * AMOUNT_SCALE)
    opening = np.where(np.isnan(previous_units), source_opening, np.nan_to_num(previous_units)).astype(np.int64)
    debits = totals["debits"].to_numpy(dtype=np.int64)
    credits = totals["credits"].to_numpy(dtype=np.int64)
    closing = opening - debits + credits
    return pd.DataFrame(
        {
            "currency": info["currency"].to_numpy(dtype=object),
            "opening_balance": format_units(opening, decimals),
            "debits": format_units(debits, decimals),
            "credits": format_units(credits, decimals),
            "closing_balance": format_units(closing, decimals),
            "booked_count": totals["booked_count"].to_numpy(dtype=np.int64),
        },
        index=ids,
    )
