"""The "View in Monte Carlo" links come from the connection's ``ui_url``/``ui_path``, which an admin can set to
anything: only an http(s) URL is ever linked. A ``javascript:``, ``data:`` or relative value never reaches the Data
Quality page's HTML or its JSON; the links fall back to Monte Carlo's address, the page says why, and the
connection's Test button says what is wrong."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from demobank.connectors.montecarlo import DEFAULT_UI_PATH, DEFAULT_UI_URL, MonteCarloHook, monte_carlo_url
from tests.ui.conftest import QUALITY_DAG, QualityRuns

BAD_UI_URLS = [
    "javascript:alert(document.cookie)//",
    "JavaScript:alert(document.domain)//",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example.test",
    "/relative/path",
    "evil.example.test",
    "https:evil.example.test",
    " javascript:alert(1)",
    "https://mc.example.test\njavascript:alert(1)",
]
BAD_UI_PATHS = ["//evil.example.test/x", "javascript:alert(1)", "@evil.example.test/x", "jobs", "/\\evil.example.test"]


def set_connection(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MONTECARLO_DEFAULT", json.dumps(
        {"conn_type": "montecarlo", "host": "http://127.0.0.1:9/sandbox", "login": "id", "password": "token",
         "extra": extra}))


def page_and_json(client: TestClient) -> tuple[str, str]:
    page = client.get(f"/demobank/data-quality/{QUALITY_DAG}")
    runs = client.get(f"/demobank/api/v1/data-quality/{QUALITY_DAG}/runs")
    assert page.status_code == 200 and runs.status_code == 200
    return page.text, runs.text


@pytest.mark.parametrize("ui_url", BAD_UI_URLS)
def test_a_ui_url_that_is_not_http_never_reaches_the_page(quality_client: TestClient, quality_runs: QualityRuns,
                                                         monkeypatch: pytest.MonkeyPatch, ui_url: str) -> None:
    set_connection(monkeypatch, ui_url=ui_url, ui_path="/jobs?search={dag_id}")

    html, body = page_and_json(quality_client)

    for text in (html, body, json.dumps(json.loads(body))):
        assert ui_url not in text and ui_url.strip() not in text
        assert "evil.example" not in text and "alert(" not in text and "base64" not in text
    assert f'href="{DEFAULT_UI_URL}/jobs?search={QUALITY_DAG}"' in html
    assert "has a ui_url or ui_path that is not an http(s) address, so the links open" in html
    runs = json.loads(body)
    assert runs["monte_carlo"]["url"] == f"{DEFAULT_UI_URL}/jobs?search={QUALITY_DAG}"
    assert "not an http(s) address" in runs["monte_carlo"]["note"]
    assert all(run["monte_carlo_url"].startswith(f"{DEFAULT_UI_URL}/jobs?search={QUALITY_DAG}&run_id=")
               for run in runs["runs"])


@pytest.mark.parametrize("ui_path", BAD_UI_PATHS)
def test_a_ui_path_that_leaves_the_host_is_not_linked(quality_client: TestClient, quality_runs: QualityRuns,
                                                     monkeypatch: pytest.MonkeyPatch, ui_path: str) -> None:
    set_connection(monkeypatch, ui_url="https://mc.example.test", ui_path=ui_path)

    html, body = page_and_json(quality_client)

    assert "evil.example" not in html + body and "alert(" not in html + body
    assert "mc.example.test" not in html + body  # the whole setting falls back, not half of it
    assert json.loads(body)["monte_carlo"]["url"] == DEFAULT_UI_URL + DEFAULT_UI_PATH.replace("{dag_id}", QUALITY_DAG)


def test_an_http_ui_url_is_linked(quality_client: TestClient, quality_runs: QualityRuns,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, ui_url="http://mc.internal.example:8080/", ui_path="/airflow/{dag_id}")

    html, body = page_and_json(quality_client)

    assert f'href="http://mc.internal.example:8080/airflow/{QUALITY_DAG}"' in html
    assert json.loads(body)["monte_carlo"]["note"] is None


@pytest.mark.parametrize(("extra", "words"), [
    ({"ui_url": "javascript:alert(1)"}, ["ui_url 'javascript:alert(1)' is not an absolute http(s) URL",
                                         f"e.g. {DEFAULT_UI_URL}"]),
    ({"ui_url": "https://mc.example.test", "ui_path": "//evil.example.test"},
     ["ui_path '//evil.example.test' is not a path on ui_url: it must start with a single '/'"]),
])
def test_the_connections_test_says_what_is_wrong(monkeypatch: pytest.MonkeyPatch, extra: dict[str, str],
                                                 words: list[str]) -> None:
    set_connection(monkeypatch, **extra)

    ok, message = MonteCarloHook().test_connection()  # refused before any request: the gateway is not reached

    assert ok is False
    assert message.startswith("connection 'montecarlo_default': ")
    for word in words:
        assert word in message
    assert f'links open {DEFAULT_UI_URL}' in message


def test_the_task_link_falls_back_too(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, ui_url="javascript:alert(1)")
    assert monte_carlo_url(QUALITY_DAG, "run-1") == f"{DEFAULT_UI_URL}/jobs?search={QUALITY_DAG}&run_id=run-1"
    set_connection(monkeypatch, ui_url="https://eu.getmontecarlo.com")
    assert monte_carlo_url(QUALITY_DAG) == f"https://eu.getmontecarlo.com/jobs?search={QUALITY_DAG}"
