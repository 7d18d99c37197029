"""DAG integrity: every DAG file imports cleanly, every DAG follows the house rules, no DAG file does I/O at import.

The I/O check uses Python's audit hooks: while the DAG files are imported, any ``open`` of a file outside the
interpreter's own libraries and the DAG folder, any socket connection, any subprocess and any SQLite connection
is recorded against the file that caused it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR

DAGS_FOLDER = PROJECT_DIR / "dags"
_IO_EVENTS = {"open", "socket.connect", "socket.getaddrinfo", "subprocess.Popen", "os.system", "sqlite3.connect",
              "urllib.Request"}


class _IoRecorder:
    """Records I/O audit events while ``active``; audit hooks cannot be removed, so it is switched off instead."""

    def __init__(self) -> None:
        self.active = False
        self.events: list[tuple[str, str]] = []
        import demobank

        # Reading Python source (the interpreter's, the venv's, our package's) is importing, not the DAG's I/O.
        package_dir = Path(demobank.__file__).resolve().parent
        self.package_dir = str(package_dir)
        # The event catalog (include/events, read-only) is the suite's data: the Logic Apps loader checks event
        # types and data against it while it renders the definitions of dags/logic_apps/.
        self.allowed_prefixes = tuple(
            str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, DAGS_FOLDER, package_dir,
                                             PROJECT_DIR / "include" / "events"}
        )

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active or event not in _IO_EVENTS:
            return
        if event == "open":
            path, mode = args[0], args[1]
            if isinstance(path, int) or path is None:
                return
            resolved = str(Path(str(path)).resolve()) if not isinstance(path, bytes) else path.decode()
            if resolved.startswith(self.allowed_prefixes) and (mode is None or "w" not in str(mode)):
                if not resolved.startswith(self.package_dir) or resolved.endswith((".py", ".pyc")):
                    return
            # Python's own bytecode cache writes next to the DAG files are not the DAG's I/O.
            if resolved.endswith(".pyc"):
                return
            self.events.append((event, resolved))
            return
        self.events.append((event, repr(args)[:200]))


_RECORDER = _IoRecorder()
sys.addaudithook(_RECORDER)


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    # Loading Airflow's own machinery first, so what remains recorded is caused by the DAG files.
    DagBag(dag_folder=str(PROJECT_DIR / "tests" / "dags" / "empty"), safe_mode=False)
    _RECORDER.active = True
    try:
        bag = DagBag(dag_folder=str(DAGS_FOLDER), safe_mode=False)
    finally:
        _RECORDER.active = False
    return bag


def test_every_dag_file_imports(dag_bag) -> None:
    from airflow.utils.file import list_py_file_paths

    assert dag_bag.import_errors == {}, "\n".join(f"{k}: {v}" for k, v in dag_bag.import_errors.items())
    # The files Airflow takes for DAG files (dags/.airflowignore leaves out the Logic Apps' functions).
    dag_files = {Path(p) for p in list_py_file_paths(str(DAGS_FOLDER)) if not Path(p).name.startswith("_")}
    assert DAGS_FOLDER / "logic_apps_loader.py" in dag_files
    loaded_files = {Path(dag.fileloc) for dag in dag_bag.dags.values()}
    assert dag_files - loaded_files == set(), "these DAG files define no DAG"


def test_there_are_dags(dag_bag) -> None:
    assert len(dag_bag.dags) >= 1


def test_house_rules(dag_bag) -> None:
    problems = []
    for dag_id, dag in dag_bag.dags.items():
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        if not dag.doc_md or len(dag.doc_md.strip()) < 40:
            problems.append(f"{dag_id}: doc_md missing or too short (use doc_md=__doc__)")
        for task in dag.tasks:
            if not task.owner or task.owner == "airflow":
                problems.append(f"{dag_id}.{task.task_id}: owner not set")
            if (task.retries or 0) < 2:
                problems.append(f"{dag_id}.{task.task_id}: retries {task.retries} < 2")
            if not task.retry_exponential_backoff:
                problems.append(f"{dag_id}.{task.task_id}: no exponential retry backoff")
    assert problems == []


def test_one_dag_per_file(dag_bag) -> None:
    """One DAG per file, except the Logic Apps loader: one DAG per definition in dags/logic_apps/."""
    by_file: dict[str, list[str]] = {}
    for dag_id, dag in dag_bag.dags.items():
        by_file.setdefault(dag.fileloc, []).append(dag_id)
    loader = by_file.pop(str(DAGS_FOLDER / "logic_apps_loader.py"), [])
    assert sorted(loader) == sorted(f"logic_app__{p.stem}" for p in (DAGS_FOLDER / "logic_apps").glob("*.yaml"))
    assert {f: ids for f, ids in by_file.items() if len(ids) > 1} == {}


def test_no_io_at_import(dag_bag) -> None:
    assert _RECORDER.events == [], "DAG files did I/O at import:\n" + "\n".join(map(str, _RECORDER.events))


def test_the_recorder_catches_io(tmp_path) -> None:
    """The I/O check itself must be able to fail."""
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "outside.txt").write_text("x")
    bad = tmp_path / "dags"
    bad.mkdir()
    (bad / "bad_dag.py").write_text(
        "from airflow.sdk import DAG\n"
        f"open({str(tmp_path / 'outside.txt')!r}).read()\n"
        "DAG(dag_id='bad', schedule=None, tags=['x'])\n"
    )
    before = len(_RECORDER.events)
    _RECORDER.active = True
    try:
        DagBag(dag_folder=str(bad), safe_mode=False)
    finally:
        _RECORDER.active = False
    new = _RECORDER.events[before:]
    del _RECORDER.events[before:]
    assert any("outside.txt" in detail for _, detail in new)


def test_email_task_retries_outlast_sendgrids_reconcile_window(dag_bag) -> None:
    """A send of unknown outcome is settled at SendGrid only after ``reconcile_after_seconds`` (600 s by default):
    every e-mail task's retries must reach past it, or the task ends failed while the e-mail may have gone out."""
    from datetime import timedelta

    from demobank.connect.operators import SendEmailOperator
    from demobank.connectors.sendgrid import DEFAULT_RECONCILE_AFTER

    email_tasks = [task for dag in dag_bag.dags.values() for task in dag.tasks if isinstance(task, SendEmailOperator)]
    assert email_tasks
    for task in email_tasks:
        delays = [task.retry_delay * (2 ** n if task.retry_exponential_backoff else 1) for n in range(task.retries)]
        reach = sum((min(delay, task.max_retry_delay or delay) for delay in delays), timedelta())
        assert reach.total_seconds() > DEFAULT_RECONCILE_AFTER, (task.dag_id, task.task_id, reach)
