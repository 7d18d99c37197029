"""The Airflow plugin of the suite: its authenticated app at ``/demobank``, its pages in the UI's nav, and,
in the local and test shapes only, the vendor sandbox at ``/sandbox``.

Registered by the thin file ``plugins/demobank_plugin.py``.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from demobank.ui.app import PAGES, create_app, sandbox_enabled
from demobank.ui.quality_api import DAG_TAB

APP_PREFIX = "/demobank"
SANDBOX_PREFIX = "/sandbox"
NAV_CATEGORY = "Demo Bank"


def _fastapi_apps() -> list[dict[str, Any]]:
    apps: list[dict[str, Any]] = [{"name": "demobank", "app": create_app(), "url_prefix": APP_PREFIX}]
    if sandbox_enabled():
        from demobank.sandbox.app import create_app as create_sandbox_app

        apps.append({"name": "demobank-sandbox", "app": create_sandbox_app(), "url_prefix": SANDBOX_PREFIX})
    return apps


def _external_views() -> list[dict[str, Any]]:
    views = []
    for page in PAGES:
        if page["path"] == "sandbox-outbox" and not sandbox_enabled():
            continue
        views.append(
            {
                "name": page["name"],
                "href": f"{APP_PREFIX}/{page['path']}",
                "destination": "nav",
                "category": NAV_CATEGORY,
                "url_route": f"demobank-{page['path']}",
            }
        )
    # The Data Quality tab: Airflow shows it on every DAG's page and puts the DAG's id in place of {DAG_ID}.
    views.append({"name": DAG_TAB["name"], "href": f"{APP_PREFIX}/{DAG_TAB['path']}", "destination": "dag",
                  "url_route": DAG_TAB["url_route"]})
    return views


class DemoBankPlugin(AirflowPlugin):
    """Demo Bank Connectivity Suite."""

    name = "demobank"
    fastapi_apps = _fastapi_apps()
    external_views = _external_views()
