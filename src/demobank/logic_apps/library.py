"""Every function a Logic App can call, found by name: the suite's own
(:mod:`demobank.logic_apps.builtin_functions`) and the bank's, from the functions folder.

**The bank's functions** live in ``dags/functions/`` (``$DEMOBANK_FUNCTIONS_DIR`` overrides it): every ``*.py``
there is imported once per process (as ``demobank_functions.<file name>``), and each ``@function`` in it registers
itself. The folder travels with the DAGs, so it is there in both runtime shapes (``make run`` reads the project's
``dags/``; the image copies ``dags/`` to ``/opt/airflow/dags``), and ``dags/.airflowignore`` keeps Airflow from
parsing it as DAG files. A file that fails to import is reported (its error, with the file) and the others still
load; a workflow that names one of its functions then says that the function is not registered.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import traceback
from pathlib import Path

import demobank.logic_apps.builtin_functions  # noqa: F401 - registers the suite's functions
from demobank.logic_apps.definition import PROJECT_DIR
from demobank.logic_apps.functions import REGISTRY, FunctionError, FunctionSpec

log = logging.getLogger(__name__)

FUNCTIONS_DIR_ENV = "DEMOBANK_FUNCTIONS_DIR"
MODULE_PREFIX = "demobank_functions"
_loaded: dict[Path, str | None] = {}
"""Each functions file imported in this process, with its import error (None: imported)."""


def functions_dir(default: Path | None = None) -> Path:
    """The bank's functions folder: ``$DEMOBANK_FUNCTIONS_DIR``, else ``default`` (the loader: the folder next to
    its DAG file), else the project's ``dags/functions/``."""
    configured = os.environ.get(FUNCTIONS_DIR_ENV)
    return Path(configured) if configured else default or PROJECT_DIR / "dags" / "functions"


def load_functions(folder: Path | None = None) -> dict[Path, str]:
    """Import every ``*.py`` of the functions folder not imported yet; return the files that failed, with the error
    (a traceback's last lines: what a developer needs to fix it)."""
    folder = folder or functions_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.py")):
            resolved = path.resolve()
            if resolved in _loaded or path.name.startswith("_"):
                continue
            name = f"{MODULE_PREFIX}.{path.stem}"
            try:
                spec = importlib.util.spec_from_file_location(name, resolved)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot import {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
                _loaded[resolved] = None
            except Exception:  # noqa: BLE001 - one broken file must not hide the other functions
                sys.modules.pop(name, None)
                _loaded[resolved] = "".join(traceback.format_exc(limit=-3))
                log.error("the functions file %s cannot be imported:\n%s", path, _loaded[resolved])
    return {path: error for path, error in _loaded.items() if error is not None and path.parent == folder.resolve()}


def registered() -> dict[str, FunctionSpec]:
    """Every registered function, by name (the functions folder loaded first)."""
    load_functions()
    return dict(REGISTRY)


def get(name: str) -> FunctionSpec:
    """The function registered as ``name``; :class:`FunctionError` naming the registered ones if there is none."""
    if name not in REGISTRY:
        load_functions()
    if name not in REGISTRY:
        raise FunctionError(f"no function {name!r} is registered (registered: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


__all__ = ["functions_dir", "get", "load_functions", "registered"]
