"""The sandbox HTTP app: local stand-ins for the Twilio, SendGrid and Monte Carlo APIs the suite calls.

Mounted by the suite's Airflow plugin under ``/sandbox`` in the API server (so Twilio's ``base_url`` and
SendGrid's ``host`` are ``http://127.0.0.1:8080/sandbox``), or run standalone with
``python -m demobank.sandbox --port N``. All routes are relative to the mount point:

===========================================================  ============================================
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``       Twilio: send an SMS
``GET /2010-04-01/Accounts/{AccountSid}/Messages.json``        Twilio: list messages (To, From, DateSent filters)
``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json``  Twilio: fetch a message
``POST /v3/mail/send``                                         SendGrid: send an e-mail
``GET /v3/messages?query=…&limit=N``                           SendGrid Email Activity (unique_args, to_email)
``POST /graphql``                                              Monte Carlo GraphQL (pycarlo)
``POST /airflow/callbacks``                                    Monte Carlo integration gateway (airflow-mcd)
``GET|DELETE /messages``                                       what was accepted
``GET|PUT|DELETE /faults``                                     injected errors and latency
``GET /core-banking/customers``                                demo core banking API (Data Factory customer sync)
``GET /health``                                                liveness
===========================================================  ============================================

Note: pycarlo builds the gateway URL with ``urljoin(endpoint, "/airflow/callbacks")``, which drops any path
prefix of the endpoint: behind the ``/sandbox`` mount the gateway callbacks arrive at
``/airflow/callbacks`` of the API server's root. :func:`create_gateway_app` is a one-route app to mount at
``/airflow`` for that case. The suite's own ``MonteCarloHook`` joins the path relative to the connection's host
instead (``<host>/airflow/callbacks``), so its reports reach this app under ``/sandbox`` and nothing needs to be
mounted at ``/airflow``.
"""

from __future__ import annotations

from fastapi import FastAPI

from demobank.sandbox import admin_api, core_banking_api, montecarlo_api, sendgrid_api, twilio_api
from demobank.sandbox.common import SandboxContext
from demobank.sandbox.settings import SandboxSettings
from demobank.sandbox.store import SandboxStore


def _context(settings: SandboxSettings | None) -> SandboxContext:
    settings = settings or SandboxSettings.from_env()
    return SandboxContext(settings=settings, store=SandboxStore(settings.db_path))


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    """Build the sandbox app.

    Does no I/O: the SQLite file is opened (and created) on the first request of each process.

    :param settings: what to accept and where to record; :meth:`SandboxSettings.from_env` if None.
    :return: the FastAPI app (mountable under any prefix).
    """
    ctx = _context(settings)
    app = FastAPI(
        title="Demo Bank vendor sandbox",
        description="Local stand-ins for the Twilio, SendGrid and Monte Carlo APIs (development and tests only).",
        version="1.0",
    )
    app.state.sandbox = ctx
    app.include_router(twilio_api.create_router(ctx))
    app.include_router(sendgrid_api.create_router(ctx))
    app.include_router(montecarlo_api.create_router(ctx))
    app.include_router(montecarlo_api.create_gateway_router(ctx))
    app.include_router(admin_api.create_router(ctx))
    app.include_router(core_banking_api.create_router(ctx))
    return app


def create_gateway_app(settings: SandboxSettings | None = None) -> FastAPI:
    """Build a one-route app, ``POST /callbacks``, to mount at ``/airflow`` next to the ``/sandbox`` app.

    It records into the same SQLite file as :func:`create_app` (same settings), so Monte Carlo gateway
    callbacks that pycarlo sends to ``<API server root>/airflow/callbacks`` are seen by ``GET /messages``.

    :param settings: as for :func:`create_app`.
    :return: the FastAPI app.
    """
    ctx = _context(settings)
    app = FastAPI(title="Demo Bank Monte Carlo gateway sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = ctx
    app.include_router(montecarlo_api.create_gateway_router(ctx, path="/callbacks"))
    return app
