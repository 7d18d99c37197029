"""Local stand-ins for the Twilio, SendGrid and Monte Carlo HTTP APIs (development and tests only).

Production code never imports this package: it only reaches the sandbox because a connection's host points
at it. See :mod:`demobank.sandbox.app` for the routes and :mod:`demobank.sandbox.settings` for the
environment variables and the default sandbox credentials.
"""

from __future__ import annotations

from demobank.sandbox.app import create_app, create_gateway_app
from demobank.sandbox.faults import FaultConfig
from demobank.sandbox.settings import SandboxSettings
from demobank.sandbox.store import SandboxStore

__all__ = ["FaultConfig", "SandboxSettings", "SandboxStore", "create_app", "create_gateway_app"]
