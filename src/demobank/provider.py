"""Provider metadata: registers the suite's connection types (and their form fields) with Airflow.

Declared as the ``apache_airflow_provider`` entry point in ``pyproject.toml``; Airflow reads it without
importing the hooks, so the connection form knows the Twilio, SendGrid and Monte Carlo fields. The ``montecarlo``
type is the suite's own (:class:`demobank.connectors.montecarlo.MonteCarloHook`, over pycarlo); ``airflow-mcd``
still registers its ``mcd`` and ``mcd-gateway`` types.
"""

from __future__ import annotations

from typing import Any

from demobank import __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow's ProvidersManager expects."""
    return {
        "package-name": "demobank-connectivity",
        "name": "Demo Bank Connectivity Suite",
        "description": "Connectors of the Demo Bank Connectivity Suite: Twilio SMS, SendGrid e-mail, Monte Carlo.",
        "versions": [__version__],
        "extra-links": [
            "demobank.connect.operators.TwilioMessageLink",
            "demobank.connectors.montecarlo.MonteCarloLink",
        ],
        "connection-types": [
            {
                "hook-class-name": "demobank.connectors.twilio.TwilioHook",
                "hook-name": "Twilio",
                "connection-type": "twilio",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"login": "Account SID", "password": "Auth Token", "host": "API base URL"},
                    "placeholders": {
                        "login": "AC…",
                        "host": "empty for api.twilio.com; http://127.0.0.1:8080/sandbox for the local sandbox",
                    },
                },
                "conn-fields": {
                    "from_number": {
                        "label": "From number",
                        "description": "Sender phone number in E.164 (+15551234567). Or give a Messaging Service SID.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "messaging_service_sid": {
                        "label": "Messaging Service SID",
                        "description": "MG… ; used instead of the From number when set.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "rate_limit_per_second": {
                        "label": "Messages per second",
                        "description": "Sender's throughput: 1 for a long code, 100 for a short code.",
                        "schema": {"type": ["number", "null"], "default": 1},
                    },
                },
            },
            {
                "hook-class-name": "demobank.connectors.sendgrid.SendGridHook",
                "hook-name": "SendGrid",
                "connection-type": "sendgrid",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"password": "API key", "host": "API host"},
                    "placeholders": {
                        "host": "empty for https://api.sendgrid.com; http://127.0.0.1:8080/sandbox for the sandbox",
                    },
                },
                "conn-fields": {
                    "from_email": {
                        "label": "From e-mail",
                        "description": "Verified sender address.",
                        "schema": {"type": ["string", "null"], "format": "email"},
                    },
                    "from_name": {
                        "label": "From name",
                        "schema": {"type": ["string", "null"]},
                    },
                    "sandbox_mode": {
                        "label": "SendGrid sandbox mode",
                        "description": "Validate requests without delivering (SendGrid answers 200).",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                },
            },
            {
                "hook-class-name": "demobank.connectors.montecarlo.MonteCarloHook",
                "hook-name": "Monte Carlo",
                "connection-type": "montecarlo",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"login": "API key id", "password": "API token", "host": "Gateway URL"},
                    "placeholders": {
                        "login": "id of an Airflow integration key",
                        "host": "empty for https://integrations.getmontecarlo.com; "
                                "http://127.0.0.1:8080/sandbox for the sandbox",
                    },
                },
                "conn-fields": {
                    "ui_url": {
                        "label": "Monte Carlo web app URL",
                        "description": "Base of the \"View in Monte Carlo\" links.",
                        "schema": {"type": ["string", "null"], "default": "https://getmontecarlo.com"},
                    },
                    "ui_path": {
                        "label": "Page of a DAG",
                        "description": "Path opened by \"View in Monte Carlo\"; {dag_id} is replaced.",
                        "schema": {"type": ["string", "null"], "default": "/jobs?search={dag_id}"},
                    },
                },
            },
        ],
    }
