"""The suite's own functions for Logic Apps: ``risk_score`` and ``format_amount``."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from demobank.logic_apps.functions import function


class Merchant(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    category_code: str = Field(pattern=r"^[0-9]{4}$")
    country: str | None = None


class Transaction(BaseModel):
    """The fields of a ``transaction.created`` event's data that scoring reads (the others are allowed)."""

    model_config = ConfigDict(extra="allow")

    transaction_id: str
    amount: Decimal = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    direction: str
    channel: str
    merchant: Merchant | None = None


RISKY_CATEGORIES = {
    "4829": 0.25,  # money transfer
    "6051": 0.25,  # quasi-cash, crypto
    "7995": 0.3,  # gambling
    "6011": 0.1,  # ATM cash
}
"""ISO 18245 merchant category codes that raise the score, and by how much."""


@function
def risk_score(transaction: Transaction) -> float:
    """A score from 0 (ordinary) to 1 (look at it now) for a transaction: larger amounts, card-not-present,
    risky merchant categories and merchants abroad add to it. A transparent heuristic for the examples, not a
    fraud model."""
    if transaction.direction == "credit":
        return 0.0
    amount = float(transaction.amount)
    score = min(amount / 10_000, 0.5)
    if transaction.channel == "card_not_present":
        score += 0.15
    if transaction.merchant is not None:
        score += RISKY_CATEGORIES.get(transaction.merchant.category_code, 0.0)
        if transaction.merchant.country not in (None, "NL", "BE", "DE", "FR"):
            score += 0.1
    return round(min(score, 1.0), 3)


CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "CHF": "CHF "}


@function
def format_amount(amount: Decimal, currency: str = "EUR") -> str:
    """An amount as a customer reads it in an SMS or e-mail: ``€1,234.50``, ``$12.00``, ``1,000.00 SEK``."""
    text = f"{amount.quantize(Decimal('0.01')):,}"
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
