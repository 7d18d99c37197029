"""Validation and transformation of transaction chunks (pandas on Arrow), on hand-made rows: each rule, its reason,
the normalisation, duplicates across chunks, currency conversion, categories and balances. The rows come both as
object columns (a SQLite source) and as Arrow-backed ``str`` columns (what the PostgreSQL extraction parses):
the same rows are refused with the same reasons."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from demobank.data_factory.core_banking import TRANSACTION_COLUMNS
from demobank.data_factory.transform import (
    Movements,
    category_of,
    daily_balances,
    format_units,
    merchant_categories,
    transform_chunk,
)
from demobank.data_factory.validate import (
    AMOUNT_RE,
    CHECK_NAMES,
    DuplicateTracker,
    ReferenceData,
    _match_mask,
    hash_texts,
    validate_chunk,
)

DAY = date(2026, 1, 5)


def reference() -> ReferenceData:
    accounts = pd.DataFrame(
        {"customer_id": ["CUST-00001", "CUST-00002", "CUST-00003"], "currency": ["EUR", "GBP", "JPY"],
         "account_type": "current", "opened_on": "2025-01-01", "opening_balance": ["100.00", "50.00", "1000"]},
        index=pd.Index(["ACC-10001", "ACC-10002", "ACC-10003"], name="account_id"), dtype=object)
    merchants = pd.DataFrame(
        {"name": ["Rewe", "Shell", "Demo Bank ATM", "Odd Shop"], "mcc": ["5411", "5541", "6011", "5950"],
         "city": ["Berlin", "Paris", "London", "Wien"], "country": ["DE", "FR", "GB", "AT"]},
        index=pd.Index(["MER-1", "MER-2", "MER-3", "MER-4"], name="merchant_id"), dtype=object)
    merchants["category"] = merchant_categories(merchants)
    return ReferenceData(DAY, {"EUR": 1.0, "GBP": 1.2, "JPY": 0.006}, accounts, merchants)


def row(n: int, **changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "row_id": str(1000 + n), "business_date": DAY.isoformat(), "transaction_id": f"TXN-20260105{n:07d}",
        "account_id": "ACC-10001", "amount": "42.50", "currency": "EUR", "direction": "debit", "status": "booked",
        "channel": "card_present", "merchant_id": "MER-1", "counterparty_name": None, "counterparty_iban": None,
        "description": "REWE BERLIN", "booked_at": "2026-01-05T09:41:07Z", "value_date": "2026-01-05",
    }
    base.update(changes)
    return base


def object_frame(*rows: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(TRANSACTION_COLUMNS), dtype=object)


def arrow_frame(*rows: dict[str, object]) -> pd.DataFrame:
    """The rows as the PostgreSQL extraction parses them: Arrow-backed ``str`` columns, NaN for NULL."""
    table = pa.Table.from_pylist(list(rows), schema=pa.schema([(c, pa.large_string()) for c in TRANSACTION_COLUMNS]))
    result = table.to_pandas()
    assert all(isinstance(result[c].array, pd.arrays.ArrowStringArray) for c in TRANSACTION_COLUMNS)
    return result


@pytest.fixture(name="frame", params=["object", "arrow"])
def frame_fixture(request: pytest.FixtureRequest) -> Callable[..., pd.DataFrame]:
    return object_frame if request.param == "object" else arrow_frame


@pytest.mark.parametrize(("changes", "check", "reason"), [
    ({"amount": "12,50"}, "amount_decimal", "amount '12,50' is not a decimal number such as 42.50"),
    ({"amount": "-3.10"}, "amount_positive", "amount '-3.10' is negative"),
    ({"amount": "0.00"}, "amount_positive", "amount '0.00' is zero"),
    ({"amount": "1e5"}, "amount_decimal", "amount '1e5' is not a decimal number"),
    ({"amount": "100000000000"}, "amount_range", "is not below 100,000,000,000"),
    ({"amount": None}, "required_fields", "missing amount"),
    ({"amount": "4.255"}, "amount_precision", "amount '4.255' has more decimals than EUR has (2)"),
    ({"currency": "XYZ"}, "currency_known", "currency 'XYZ' is not a known ISO 4217 currency with an FX rate"),
    ({"currency": "USD"}, "currency_known", "(known: EUR, GBP, JPY)"),
    ({"account_id": None, "direction": None}, "required_fields", "missing account_id, direction"),
    ({"account_id": "acc-1"}, "account_id_format", "account_id 'acc-1' is not ACC- and 5 to 20"),
    ({"account_id": "ACC-99999"}, "account_known", "account 'ACC-99999' is not an account of the core banking"),
    ({"transaction_id": "T-1"}, "transaction_id_format", "transaction_id 'T-1' is not TXN-"),
    ({"direction": "DR"}, "direction_valid", "direction 'DR' is not one of debit, credit"),
    ({"status": "void"}, "status_valid", "status 'void' is not one of pending, booked"),
    ({"channel": "fax"}, "channel_valid", "channel 'fax' is not one of"),
    ({"booked_at": "05/01/2026 09:41"}, "booked_at_timestamp", "is not an RFC 3339 UTC timestamp"),
    ({"booked_at": "2026-1-5T9:41:07Z"}, "booked_at_timestamp", "is not an RFC 3339 UTC timestamp"),
    ({"booked_at": "2026-01-05T25:00:00Z"}, "booked_at_timestamp", "is not an RFC 3339 UTC timestamp"),
    ({"booked_at": "2026-01-04T23:59:59Z"}, "booked_at_in_day", "is not on the business date 2026-01-05"),
    ({"value_date": "2026-02-30"}, "value_date_format", "value_date '2026-02-30' is not a date"),
    ({"merchant_id": "MER-9"}, "merchant_known", "merchant_id 'MER-9' is not a known merchant (needed for channel "
                                                 "card_present)"),
    ({"counterparty_iban": "DE89370400440532013000"}, "counterparty_iban_masked", "is not a masked IBAN"),
    ({"description": "x" * 141}, "text_lengths", "description has 141 characters, more than 140"),
])
def test_each_rule_rejects_its_rows_with_a_reason(changes: dict, check: str, reason: str,
                                                  frame: Callable[..., pd.DataFrame]) -> None:
    result = validate_chunk(frame(row(0), row(1, **changes), row(2)), reference(), DuplicateTracker())

    assert len(result.good) == 2 and len(result.bad) == 1
    assert reason in result.bad["reasons"].iloc[0]
    assert result.failures[check] == 1
    assert sum(result.failures.values()) == 1  # one rule, one row
    assert result.bad["row_id"].iloc[0] == "1001"  # the raw row goes to the quarantine as it was


def test_every_problem_of_a_row_is_listed(frame: Callable[..., pd.DataFrame]) -> None:
    result = validate_chunk(frame(row(0, amount="abc", currency="XYZ", direction="sideways")), reference(),
                            DuplicateTracker())
    reasons = result.bad["reasons"].iloc[0]
    assert "amount 'abc'" in reasons and "currency 'XYZ'" in reasons and "direction 'sideways'" in reasons


def test_codes_are_normalised_before_checking(frame: Callable[..., pd.DataFrame]) -> None:
    result = validate_chunk(frame(row(0, currency=" eur", direction="DEBIT", channel="Card_Present")), reference(),
                            DuplicateTracker())
    assert result.bad.empty
    good = result.good.iloc[0]
    assert (good["currency"], good["direction"], good["channel"], bool(good["normalised"])) == (
        "EUR", "debit", "card_present", True)


def test_precision_follows_the_currency_and_trailing_zeros_are_fine(frame: Callable[..., pd.DataFrame]) -> None:
    result = validate_chunk(frame(row(0, account_id="ACC-10003", currency="JPY", amount="1200"),
                                  row(1, account_id="ACC-10003", currency="JPY", amount="1200.5"),
                                  row(2, amount="42.500")), reference(), DuplicateTracker())
    assert list(result.good["row_id"]) == ["1000", "1002"]
    assert "has more decimals than JPY has (0)" in result.bad["reasons"].iloc[0]


def test_duplicates_are_caught_within_and_across_chunks_and_the_first_row_wins(
        frame: Callable[..., pd.DataFrame]) -> None:
    tracker = DuplicateTracker()
    first = validate_chunk(frame(row(0), row(1), row(0, row_id="1099")), reference(), tracker)
    second = validate_chunk(frame(row(1, row_id="2000"), row(3)), reference(), tracker)

    assert list(first.good["row_id"]) == ["1000", "1001"] and list(first.bad["row_id"]) == ["1099"]
    assert list(second.good["row_id"]) == ["1003"] and list(second.bad["row_id"]) == ["2000"]
    assert "appears in an earlier row of this export" in second.bad["reasons"].iloc[0]
    assert tracker.count == 3


def test_a_malformed_first_occurrence_does_not_hide_its_valid_duplicate(frame: Callable[..., pd.DataFrame]) -> None:
    result = validate_chunk(frame(row(0, amount="bad"), row(0, row_id="1050")), reference(), DuplicateTracker())
    assert list(result.good["row_id"]) == ["1050"]
    assert result.failures["unique_transaction_id"] == 0


def test_arrows_regular_expressions_agree_with_pythons() -> None:
    import re

    values = np.array(["1.5", "0.25", "05", "1.", ".5", "-1", None, "abc", "123456789012345", "1234567890123456",
                       "1.23456", "0", "7\x008", "1.5\n", 42], dtype=object)
    present = pd.notna(values)
    matched = _match_mask(values, present, AMOUNT_RE)  # RE2, in C++ (a value that is not text never matches)
    expected = [isinstance(v, str) and re.fullmatch(AMOUNT_RE, v) is not None for v in values]
    assert matched.tolist() == expected
    assert matched.tolist() == [True, True, False, False, False, False, False, False, True, False, False, True, False,
                                False, False]


def test_a_value_that_is_not_text_is_refused_and_quoted_as_it_was() -> None:
    result = validate_chunk(object_frame(row(0), row(1, amount=42), row(2, description=3.5)), reference(),
                            DuplicateTracker())
    assert list(result.good["row_id"]) == ["1000"]
    assert list(result.bad["reasons"]) == [
        "amount '42' is not a decimal number such as 42.50 ('.' as separator, at most 4 decimals)",
        "description has 3 characters, more than 140"]


def test_text_hashes_are_stable_and_tell_texts_apart() -> None:
    ids = ["TXN-20260105000001", "TXN-20260105000002", "TXN-20260105000001", "TXN-A", "TXN-A\x00", "é" * 10,
           "x" * 300, "x" * 299 + "y"]
    for texts in (ids[:5], ids[:6], ids):  # ASCII (padded by Arrow), any UTF-8 (padded by numpy), long texts
        hashes = hash_texts(pa.array(texts, type=pa.large_string()))
        assert hashes[0] == hashes[2] and len(set(hashes.tolist())) == len(set(texts))
        assert (hash_texts(pa.array(texts, type=pa.large_string()).slice(1, 2)) == hashes[1:3]).all()  # offsets
    tracker = DuplicateTracker()
    assert tracker.first_occurrences(pd.Series(ids[:4])).tolist() == [True, True, False, True]
    assert tracker.first_occurrences(pd.Series(ids[4:] + ids[:1])).tolist() == [True, True, True, True, False]
    assert tracker.count == 7
    # A chunk's longest id sets how wide the ids are padded: the hash does not depend on it.
    assert tracker.first_occurrences(pd.Series(["TXN-" + "Z" * 32, ids[1]])).tolist() == [True, False]


def test_the_check_names_are_stable() -> None:
    assert "bad_share_threshold" not in CHECK_NAMES  # a run-level check, recorded by the pipeline
    assert {"required_fields", "amount_decimal", "currency_known", "unique_transaction_id"} <= set(CHECK_NAMES)


# -- transformation --------------------------------------------------------------------------------------------


def test_currency_normalisation_categories_and_balances(frame: Callable[..., pd.DataFrame]) -> None:
    ref = reference()
    rows = frame(
        row(0),  # 42.50 EUR at Rewe
        row(1, account_id="ACC-10002", currency="EUR", amount="12.00", merchant_id="MER-2"),  # a GBP card in France
        row(2, channel="incoming_transfer", direction="credit", merchant_id=None, amount="1000.00",
            counterparty_name="Acme GmbH", description="SALARY"),
        row(3, status="pending", amount="5.00"),  # not booked: not in the balance
        row(4, account_id="ACC-10003", currency="JPY", amount="1200", merchant_id="MER-3", channel="atm"),
    )
    movements = Movements(ref.accounts.index)
    checked = validate_chunk(rows, ref, DuplicateTracker())
    assert checked.bad.empty
    out = transform_chunk(checked.good, ref, movements)

    columns = out.columns
    assert list(columns["amount_eur"]) == ["42.50", "12.00", "1000.00", "5.00", "7.20"]  # in cents
    assert out.units["amount_eur"].tolist() == [4250, 1200, 100000, 500, 720]
    assert out.units["amount_account"].tolist() == [425000, 100000, 10000000, 50000, 12000000]
    assert list(columns["fx_rate_eur"]) == ["1.00000000", "1.00000000", "1.00000000", "1.00000000", "0.00600000"]
    assert list(columns["amount_account"]) == ["42.50", "10.00", "1000.00", "5.00", "1200"]  # 12 EUR = 10 GBP
    assert list(columns["category"]) == ["groceries", "fuel", "income", "groceries", "cash"]

    balances = daily_balances(movements, pd.Series({"ACC-10001": "500.00"}, dtype=object), ref.accounts)
    eur = balances.loc["ACC-10001"]
    assert (eur["opening_balance"], eur["debits"], eur["credits"], eur["closing_balance"], eur["booked_count"]) == (
        "500.00", "42.50", "1000.00", "1457.50", 2)  # the previous closing balance, not the source's opening one
    gbp = balances.loc["ACC-10002"]
    assert (gbp["opening_balance"], gbp["closing_balance"]) == ("50.00", "40.00")  # from the source
    assert balances.loc["ACC-10003", "closing_balance"] == "-200"


def test_categories_from_the_mcc_its_range_or_the_channel() -> None:
    categories = category_of(pd.Series(["5411", "3012", "7999", None, None, "0001"], dtype=object),
                             pd.Series(["card_present", "card_present", "card_present", "direct_debit", "atm",
                                        "card_present"]))
    assert list(categories) == ["groceries", "travel", "entertainment", "bills", "cash", "other"]


def test_units_format_as_decimal_text() -> None:
    assert list(format_units(np.array([425000, 10000, -5, 0]), np.array([2, 0, 4, 2]))) == [
        "42.50", "1", "-0.0005", "0.00"]
