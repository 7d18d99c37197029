"""Transformations of validated transactions (pandas, vectorised, one chunk at a time).

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
never as binary floats that get summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from demobank.data_factory.validate import CURRENCY_DECIMALS, ReferenceData
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
    units = np.asarray(units, dtype=np.int64)
    decimals = np.broadcast_to(np.asarray(decimals, dtype=np.int64), units.shape)
    out = np.empty(len(units), dtype=object)
    for places in np.unique(decimals):
        rows = decimals == places
        value = units[rows] // (10 ** (scale_decimals - int(places)))
        sign = np.where(value < 0, "-", "")
        whole, frac = np.divmod(np.abs(value), 10 ** int(places))
        whole_text = whole.astype(str).astype(object)
        if places == 0:
            out[rows] = sign.astype(object) + whole_text
        else:
            out[rows] = (sign.astype(object) + whole_text + "."
                         + np.char.zfill(frac.astype(str), int(places)).astype(object))
    return out


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
    """One chunk, transformed: the warehouse rows as column arrays (``OUTPUT_COLUMNS``; text, ``None``/NaN for
    NULL), and for the fast path of a PostgreSQL source, each row's line of the export as ``COPY`` text.

    :ivar columns: every output column.
    :ivar source_lines: the export's ``COPY`` text line of each row (its first fifteen columns), or ``None``;
        ``None`` also for a row whose values were normalised (they differ from the export's text).
    """

    columns: dict[str, np.ndarray]
    source_lines: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.columns["transaction_id"])


def transform_chunk(good: pd.DataFrame, ref: ReferenceData, movements: Movements,
                    source_lines: np.ndarray | None = None) -> Transformed:
    """Enrich and normalise the validated rows of one chunk; add their booked amounts to ``movements``.

    Values stay text where they are already valid text (ids, the amount as exported, timestamps); computed
    numbers are formatted once. Missing values are ``None`` or NaN.

    :param good: rows that passed :func:`demobank.data_factory.validate.validate_chunk` (normalised values).
    :param ref: FX rates, accounts and merchants for the day.
    :param movements: the day's running per-account totals.
    :param source_lines: the export's ``COPY`` text line of each row of ``good`` (PostgreSQL sources), passed on
        for the fast path.
    """
    currency = good["currency"]
    account_pos = (good["account_pos"].to_numpy() if "account_pos" in good
                   else ref.accounts.index.get_indexer(good["account_id"].to_numpy(dtype=object)))
    account_currency = ref.accounts["currency"].to_numpy(dtype=object)[account_pos]
    rates = {code: float(rate) for code, rate in ref.fx_rates.items()}
    codes = pd.Index(list(rates), dtype=object)
    rate_values = np.array([*rates.values(), np.nan])
    currency_pos = codes.get_indexer(currency.to_numpy(dtype=object))
    rate = rate_values[currency_pos]  # position -1 (no rate: validation refused the row) takes NaN
    account_rate = rate_values[codes.get_indexer(account_currency)]
    amount_text = good["amount"].to_numpy(dtype=object)
    units = (np.round(good["amount_value"].to_numpy(dtype=float) * AMOUNT_SCALE).astype(np.int64)
             if "amount_value" in good else amount_units(good["amount"]))
    amount_eur = np.round(units / AMOUNT_SCALE * rate, 2)

    # In the account's currency: the amount itself, or converted through the euro (cards used abroad).
    same = currency.to_numpy(dtype=object) == account_currency
    account_units = units.copy()
    amount_account = amount_text.copy()
    if not same.all():
        other = ~same
        places = pd.Series(account_currency[other]).map(CURRENCY_DECIMALS).fillna(2).to_numpy(dtype=np.int64)
        step = 10 ** (4 - places)
        converted = (np.round(units[other] * (rate[other] / account_rate[other]) / step) * step).astype(np.int64)
        account_units[other] = converted
        amount_account[other] = format_units(converted, places)
    credit = (good["direction"] == "credit").to_numpy()
    booked = (good["status"] == "booked").to_numpy()
    movements.add(account_pos, account_units, credit, booked)

    channel = good["channel"]
    with_merchant = channel.isin(("card_present", "card_not_present", "atm")).to_numpy()
    merchant_pos = (good["merchant_pos"].to_numpy() if "merchant_pos" in good
                    else ref.merchants.index.get_indexer(good["merchant_id"].to_numpy(dtype=object)))
    merchant_pos = np.where(with_merchant, merchant_pos, -1)
    has_merchant = merchant_pos >= 0

    categories = (ref.merchants["category"] if "category" in ref.merchants
                  else merchant_categories(ref.merchants)).to_numpy(dtype=object)
    by_channel = channel.map(_CHANNEL_CATEGORIES).fillna("other").to_numpy(dtype=object)
    category = (np.where(has_merchant, categories[np.maximum(merchant_pos, 0)], by_channel) if len(categories)
                else by_channel)
    rate_text = {code: f"{value:.8f}" for code, value in rates.items()}

    columns = {name: good[source].to_numpy(dtype=object) for name, source in _SOURCE_NAMES.items()}
    columns.update({
        "category": category,
        "fx_rate_eur": np.array([*rate_text.values(), None], dtype=object)[currency_pos],
        "amount_eur": np.array(list(map(repr, amount_eur.tolist())), dtype=object),
        "amount_account": amount_account,
    })  # fmt: skip
    lines = None
    if source_lines is not None:
        lines = np.asarray(source_lines, dtype=object)
        if "normalised" in good:
            lines = np.where(good["normalised"].to_numpy(dtype=bool), None, lines)
    return Transformed(columns, lines)


_SOURCE_NAMES = {name: ("row_id" if name == "source_row_id" else name) for name in FACT_COLUMNS[:15]}


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
