"""Demo Bank Connectivity Suite: Connect, Events, Data Factory, Logic Apps and Functions on Airflow 3.3."""

from __future__ import annotations

__version__ = "0.1.0"
