"""
### Logic Apps

Every Logic App definition in `dags/logic_apps/*.yaml` (or `$DEMOBANK_LOGIC_APPS_DIR`) becomes an Airflow DAG
named `logic_app__<name>` (see `demobank.logic_apps.loader`). A definition with a problem is an import error of its
own file, naming its line and field; the other workflows keep running. The bank's functions are in
`dags/functions/` (or `$DEMOBANK_FUNCTIONS_DIR`). `demobank workflows validate` checks them before you commit.
"""

from __future__ import annotations

from pathlib import Path

from demobank.logic_apps.definition import definitions_dir
from demobank.logic_apps.library import functions_dir
from demobank.logic_apps.loader import load_dags

HERE = Path(__file__).parent
globals().update(load_dags(definitions_dir(HERE / "logic_apps"), functions=functions_dir(HERE / "functions")))
