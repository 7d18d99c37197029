"""``demobank workflows …``: the Logic App definitions' command line (``validate``, ``list``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFINITIONS_DIR_ENV = "DEMOBANK_LOGIC_APPS_DIR"


def definitions_dir() -> Path:
    """Where the definitions are: ``DEMOBANK_LOGIC_APPS_DIR``, or the project's ``dags/logic_apps/``."""
    configured = os.environ.get(DEFINITIONS_DIR_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[3] / "dags" / "logic_apps"


def definition_files(paths: list[str] | None = None) -> list[Path]:
    """The ``*.yaml``/``*.yml`` files of the given paths (folders are searched, files taken as they are), or of
    :func:`definitions_dir`."""
    found: list[Path] = []
    for entry in [Path(p) for p in paths] if paths else [definitions_dir()]:
        if entry.is_dir():
            found += sorted(p for p in entry.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            found.append(entry)
    return found


def _validate(args: argparse.Namespace) -> int:
    from demobank.logic_apps.validate import Context, validate_files

    files = definition_files(args.paths)
    if not files:
        print(f"no definitions (*.yaml) in {', '.join(args.paths or [str(definitions_dir())])}", file=sys.stderr)
        return 1
    results = validate_files(files, Context.of_project(args.settings))
    problems = [problem for found in results.values() for problem in found]
    for problem in problems:
        print(problem)
    bad = sum(1 for found in results.values() if found)
    summary = f"{len(files)} definition(s): {len(files) - bad} valid, {bad} with {len(problems)} problem(s)"
    print(summary, file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def _list(args: argparse.Namespace) -> int:
    from demobank.logic_apps.definition import DefinitionError, load_definition

    for path in definition_files(args.paths):
        try:
            workflow = load_definition(path)
        except DefinitionError as error:
            print(f"{path}: not valid ({len(error.problems)} problem(s): run `demobank workflows validate {path}`)")
            continue
        print(f"{workflow.name}\t{workflow.trigger.type}\t{len(workflow.steps)} step(s)\t{workflow.dag_id}\t{path}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """``validate`` and ``list`` under ``demobank workflows``; each sets ``handler`` (args → exit code)."""
    validate = commands.add_parser("validate", help="check definitions: their schema and their meaning; each "
                                                    "problem as file:line:column: field: message; exit 1 on any")
    validate.add_argument("paths", nargs="*", help=f"files or folders (default: ${DEFINITIONS_DIR_ENV} or "
                                                   "dags/logic_apps/)")
    validate.add_argument("--settings", help="the settings file whose connections exist (default: the project's "
                                             "airflow_settings.yaml; AIRFLOW_CONN_* variables count too)")
    validate.set_defaults(handler=_validate)
    listing = commands.add_parser("list", help="every definition: name, trigger, steps, DAG id, file")
    listing.add_argument("paths", nargs="*")
    listing.set_defaults(handler=_list)
