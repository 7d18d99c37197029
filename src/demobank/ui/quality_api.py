"""The Data Quality tab of the Data Factory DAGs: its page and its API, in the plugin app (``/demobank``).

* ``GET /data-quality/{dag_id}`` — the page Airflow shows in the DAG page's **Data Quality** tab (an iframe whose
  ``href`` is ``/demobank/data-quality/{DAG_ID}``; see :data:`DAG_TAB`).
* ``GET /api/v1/data-quality/{dag_id}/runs?limit=50`` — ``{"dag_id", "kind", "limit", "monte_carlo": {"url",
  "connection_id", "configured", "note"}, "runs": [...]}``: the run history, newest first, each run as
  :func:`~demobank.data_factory.quality.run_history` gives it plus ``checks_summary`` (passed/failed/warning counts)
  and ``monte_carlo_url``.
* ``GET /api/v1/data-quality/{dag_id}/runs/{run_id}`` — one run, the same shape.

A DAG that is not a Data Factory pipeline, or no DAG at all, answers ``404`` saying which (a Data Factory DAG that
has not run yet has an empty history); an unknown run ``404``; an unreadable suite database ``503``.

The record itself is :mod:`demobank.data_factory.quality`; these routes only translate it to HTTP.

Why the page has to tell DAGs apart: Airflow 3.3 shows a ``destination: "dag"`` tab on *every* DAG's page (the UI
filters plugin views by destination only), so the page must say plainly when a DAG is not a Data Factory pipeline.
A DAG is one when it has the ``data_factory`` tag (read from Airflow's metadata database) or when the record holds
runs of it (a DAG since renamed or removed keeps its history).

Access: each route needs the suite's ``read`` permission and the right to read the DAG's runs
(``is_authorized_dag(GET, RUN, <dag_id>)``, as Airflow's own run endpoints ask): the record says what a DAG's runs
did. A refusal is the suite's ``403`` naming the permission (:mod:`demobank.ui.permissions`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from demobank.data_factory.quality import run_detail, run_history
from demobank.ui.permissions import Action, require, require_dag_access

log = logging.getLogger(__name__)

DATA_FACTORY_TAG = "data_factory"
"""The tag every Data Factory DAG carries (``dags/data_factory/``)."""
PAGE_PATH = "data-quality"
"""The page's path in the plugin app: ``/demobank/data-quality/{dag_id}``."""
MONTECARLO_CONN_ID = "montecarlo_default"
"""The connection the "View in Monte Carlo" links are built from (its extras ``ui_url`` and ``ui_path``)."""
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

#: The DAG page tab (an ``external_views`` entry without ``href``: the plugin prefixes it with the app's mount point).
DAG_TAB: dict[str, str] = {"name": "Data Quality", "path": f"{PAGE_PATH}/{{DAG_ID}}", "destination": "dag",
                           "url_route": "demobank-data-quality"}


class DagKind(StrEnum):
    """What the tab can say about a DAG."""

    DATA_FACTORY = "data_factory"
    """A Data Factory pipeline: it has a record (possibly still empty)."""
    NOT_DATA_FACTORY = "not_data_factory"
    """A DAG of Airflow's without the ``data_factory`` tag and without a record."""
    UNKNOWN = "unknown"
    """No such DAG in Airflow and no record of it (or Airflow's DAG list could not be read)."""


@dataclass(frozen=True)
class DagInfo:
    """What Airflow's metadata database says about a DAG id.

    :param exists: Airflow knows the DAG.
    :param tags: its tags.
    """

    exists: bool
    tags: frozenset[str] = frozenset()


def airflow_dag_info(dag_id: str) -> DagInfo:
    """The DAG as Airflow's metadata database has it (the API server's own database session)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        dag = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id))
        if dag is None:
            return DagInfo(exists=False)
        return DagInfo(exists=True, tags=frozenset(tag.name for tag in dag.tags))


def monte_carlo_links(dag_id: str, run_ids: Sequence[str] = ()) -> dict[str, Any]:
    """The DAG's "View in Monte Carlo" link, one per run, and whether the connection behind them is set up.

    :func:`demobank.connectors.montecarlo.monte_carlo_url` never fails (without the connection it links to Monte
    Carlo's default address); the page explains that case instead of hiding the link, so that the link is where
    users expect it and they learn what to configure.

    :return: ``{"url", "connection_id", "configured", "note", "runs": {run_id: url}}``.
    """
    from airflow.sdk import BaseHook

    from demobank.connectors.montecarlo import DEFAULT_UI_URL, monte_carlo_url, ui_link_problem

    note = None
    try:
        extras = BaseHook.get_connection(MONTECARLO_CONN_ID).extra_dejson
        configured = True
        if ui_link_problem(extras) is not None:
            # The value itself is never shown: it is what a page must not render (e.g. a javascript: URL).
            note = (f"connection {MONTECARLO_CONN_ID} has a ui_url or ui_path that is not an http(s) address, so "
                    f"the links open {DEFAULT_UI_URL}; fix it in the connection (its Test button says what is wrong)")
        elif not (extras.get("ui_url") or extras.get("extra__montecarlo__ui_url")):
            note = (f"connection {MONTECARLO_CONN_ID} has no ui_url extra, so the links open {DEFAULT_UI_URL}; set "
                    "ui_url to your Monte Carlo web app")
    except Exception as error:  # noqa: BLE001 - any reason the connection is unreadable: the page explains it
        log.debug("connection %s unreadable for the Data Quality tab: %s", MONTECARLO_CONN_ID, error)
        configured = False
        note = (f"connection {MONTECARLO_CONN_ID} is not set up, so the links open Monte Carlo's default address "
                f"({DEFAULT_UI_URL}); add the connection (type montecarlo, extra ui_url) to link to your workspace")
    return {
        "url": monte_carlo_url(dag_id, montecarlo_conn_id=MONTECARLO_CONN_ID),
        "connection_id": MONTECARLO_CONN_ID,
        "configured": configured,
        "note": note,
        "runs": {run_id: monte_carlo_url(dag_id, run_id, montecarlo_conn_id=MONTECARLO_CONN_ID)
                 for run_id in run_ids},
    }


def _suite_engine() -> Engine:
    from demobank.db.engine import get_engine

    return get_engine()


def _check_counts(checks: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "warning": 0}
    for check in checks:
        counts[check["status"]] = counts.get(check["status"], 0) + 1
    return counts


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def create_router(
    engine_factory: Callable[[], Engine] = _suite_engine,
    dag_lookup: Callable[[str], DagInfo | None] = airflow_dag_info,
) -> APIRouter:
    """The Data Quality page and API routes (full paths: include the router without a prefix).

    :param engine_factory: returns the suite database's engine (tests pass their own).
    :param dag_lookup: what Airflow knows of a DAG id (tests pass their own; the API server reads its metadata DB).
    """
    router = APIRouter(dependencies=[require(Action.READ),
                                     require_dag_access("GET", "read the data quality record of this DAG")])

    def history(dag_id: str, limit: int) -> list[dict[str, Any]]:
        return run_history(engine_factory(), dag_id, limit)

    def classify(dag_id: str, has_record: bool) -> tuple[DagKind, str | None]:
        """The DAG's kind, and for a DAG without a record, the sentence saying why there is none."""
        if has_record:
            return DagKind.DATA_FACTORY, None
        try:
            info: DagInfo | None = dag_lookup(dag_id)
        except Exception:  # Airflow's DAG list unreadable: say less, but still answer
            log.exception("could not look DAG %s up in Airflow's metadata database", dag_id)
            info = None
        if info is None:
            return DagKind.UNKNOWN, (f"there is no data quality record for DAG {dag_id} (Airflow's DAG list could "
                                     "not be read to say whether it is a Data Factory pipeline)")
        if DATA_FACTORY_TAG in info.tags:
            return DagKind.DATA_FACTORY, None
        if info.exists:
            return DagKind.NOT_DATA_FACTORY, (
                f"DAG {dag_id} is not a Data Factory pipeline (it has no '{DATA_FACTORY_TAG}' tag), so it has no data "
                "quality record: the Data Quality tab is for the Data Factory DAGs, such as data_factory_transactions")
        return DagKind.UNKNOWN, (f"there is no DAG {dag_id} in Airflow and no data quality record of it: check the "
                                 "DAG id")

    def unreadable(error: SQLAlchemyError) -> str:
        log.error("the data quality record could not be read: %s", error)
        return (f"the suite's database could not be read ({type(error).__name__}); try again, and if it persists "
                "check the demobank_db connection and the API server's log")

    def with_links(runs: list[dict[str, Any]], links: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**run, "checks_summary": _check_counts(run["checks"]),
                 "monte_carlo_url": links["runs"].get(run["run_id"])} for run in runs]

    @router.get(f"/{PAGE_PATH}/{{dag_id}}", response_class=HTMLResponse)
    def data_quality_page(request: Request, dag_id: str) -> HTMLResponse:
        from demobank.ui.templating import TEMPLATES

        try:
            has_record = bool(history(dag_id, 1))
        except SQLAlchemyError as error:
            return TEMPLATES.TemplateResponse(
                request, "data_quality.html", {"dag_id": dag_id, "kind": "error", "message": unreadable(error)},
                status_code=503)
        kind, message = classify(dag_id, has_record)
        monte_carlo = monte_carlo_links(dag_id) if kind == DagKind.DATA_FACTORY else None
        config = {"dag_id": dag_id, "api": f"../api/v1/{PAGE_PATH}/{quote(dag_id, safe='')}/runs",
                  "limit": DEFAULT_LIMIT}
        return TEMPLATES.TemplateResponse(
            request, "data_quality.html",
            {"dag_id": dag_id, "kind": kind.value, "message": message, "monte_carlo": monte_carlo, "config": config},
            status_code=404 if kind == DagKind.UNKNOWN else 200,
        )

    @router.get(f"/api/v1/{PAGE_PATH}/{{dag_id}}/runs")
    def data_quality_runs(
        dag_id: str, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    ) -> JSONResponse:
        try:
            runs = history(dag_id, limit)
        except SQLAlchemyError as error:
            return _error(503, unreadable(error))
        kind, message = classify(dag_id, bool(runs))
        if kind != DagKind.DATA_FACTORY:
            return _error(404, message or f"no data quality record for DAG {dag_id}", dag_id=dag_id, kind=kind.value)
        links = monte_carlo_links(dag_id, [run["run_id"] for run in runs])
        return JSONResponse({
            "dag_id": dag_id,
            "kind": kind.value,
            "limit": limit,
            "monte_carlo": {key: value for key, value in links.items() if key != "runs"},
            "runs": with_links(runs, links),
        })

    @router.get(f"/api/v1/{PAGE_PATH}/{{dag_id}}/runs/{{run_id}}")
    def data_quality_run(dag_id: str, run_id: str) -> JSONResponse:
        try:
            run = run_detail(engine_factory(), dag_id, run_id)
            has_record = run is not None or bool(history(dag_id, 1))
        except SQLAlchemyError as error:
            return _error(503, unreadable(error))
        kind, message = classify(dag_id, has_record)
        if kind != DagKind.DATA_FACTORY:
            return _error(404, message or f"no data quality record for DAG {dag_id}", dag_id=dag_id, kind=kind.value)
        if run is None:
            return _error(404, f"DAG {dag_id} has no run {run_id} in the data quality record (a run has one from the "
                               "moment its first task starts): check the run id", dag_id=dag_id, run_id=run_id)
        links = monte_carlo_links(dag_id, [run_id])
        return JSONResponse(with_links([run], links)[0])

    return router
