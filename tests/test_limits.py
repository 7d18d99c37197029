"""The suite's input limits (``demobank.limits``): each read from its environment variable, documented in the
README's Events section with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from demobank.exceptions import ConfigurationError
from demobank.limits import ALL_LIMITS, EVENT_MAX_BYTES, KIB, MAX_PROBLEMS, MIB, Limit, limited

README = Path(__file__).resolve().parents[1] / "README.md"


def _human(value: int) -> str:
    if value % MIB == 0:
        return f"{value // MIB} MiB"
    if value % KIB == 0 and value >= KIB:
        return f"{value // KIB} KiB"
    return f"{value:,}"


@pytest.mark.parametrize("limit", ALL_LIMITS, ids=lambda limit: limit.env)
def test_every_limit_is_in_the_readme_with_its_default(limit: Limit) -> None:
    events = README.read_text(encoding="utf-8").split("## Events", 1)[1].split("\n## ", 1)[0]
    row = re.search(rf"^  \| `{limit.env}` \| ([^|]+) \|", events, re.MULTILINE)
    assert row is not None, f"{limit.env} is not in the README's table of input limits"
    assert row.group(1).strip() == _human(limit.default)


def test_a_limit_is_its_variable_or_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVENT_MAX_BYTES.env, raising=False)
    assert EVENT_MAX_BYTES.value() == 256 * KIB
    monkeypatch.setenv(EVENT_MAX_BYTES.env, " 1000 ")
    assert EVENT_MAX_BYTES.value() == 1000
    assert EVENT_MAX_BYTES.describe() == "1000 bytes (DEMOBANK_EVENT_MAX_BYTES)"
    monkeypatch.setenv(EVENT_MAX_BYTES.env, "")
    assert EVENT_MAX_BYTES.value() == 256 * KIB


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "lots", "1e6"])
def test_a_malformed_limit_says_the_variable_the_value_and_the_default(monkeypatch: pytest.MonkeyPatch,
                                                                      raw: str) -> None:
    monkeypatch.setenv(MAX_PROBLEMS.env, raw)
    with pytest.raises(ConfigurationError) as refused:
        MAX_PROBLEMS.value()
    assert str(refused.value) == (
        f"DEMOBANK_API_MAX_PROBLEMS={raw!r} is not a positive whole number of problems: it sets how many problems "
        "one 422 answer lists; set it to e.g. 100 (the default) or unset it.")


def test_limited_keeps_the_first_and_counts_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_PROBLEMS.env, raising=False)
    assert limited(list(range(250))) == (list(range(100)), 150)
    assert limited([1, 2]) == ([1, 2], 0)
