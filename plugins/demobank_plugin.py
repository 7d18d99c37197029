"""Registers the Demo Bank Connectivity Suite's Airflow plugin (defined in the installed package)."""

from demobank.ui.plugin import DemoBankPlugin

__all__ = ["DemoBankPlugin"]
