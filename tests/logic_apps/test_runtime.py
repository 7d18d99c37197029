"""The step operators' own pieces, without a DAG run (tests/e2e/test_logic_apps.py runs them in `make run`): a
`customer:` recipient comes from the customer's record, and a customer without one skips the step."""

from __future__ import annotations

import pytest

from demobank.logic_apps.runtime import _customer_contact, text_as_html


@pytest.fixture
def suite_db(tmp_path, monkeypatch: pytest.MonkeyPatch):
    from demobank.db.engine import dispose_engines, get_engine, session_scope
    from demobank.db.migrate import upgrade
    from demobank.db.models import DemoCustomer

    url = f"sqlite:///{tmp_path / 'suite.db'}"
    upgrade(url)
    monkeypatch.setenv("DEMOBANK_DB_URL", url)
    with session_scope(get_engine(url)) as session:
        session.add(DemoCustomer(customer_id="CUST-00042", full_name="Ada Lovelace", phone="+15005550042",
                                 email="ada@example.com"))
    yield
    dispose_engines()


def test_a_customer_recipient_is_the_contact_on_record(suite_db: None) -> None:
    assert _customer_contact("CUST-00042", 0, "phone number") == "+15005550042"
    assert _customer_contact("CUST-00042", 1, "e-mail address") == "ada@example.com"


def test_a_customer_without_a_record_skips_the_step_saying_why(suite_db: None) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="customer 'CUST-100001' has no phone number on record"):
        _customer_contact("CUST-100001", 0, "phone number")


def test_a_plain_text_body_becomes_escaped_html_with_its_lines() -> None:
    assert text_as_html("Hello <Ada>,\n\nline one\nline two") == "<p>Hello &lt;Ada&gt;,</p><p>line one<br>line two</p>"
