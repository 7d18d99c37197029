"""What the ``events_dispatch`` DAG's task does, Airflow-free (tested without Airflow)."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from sqlalchemy import Engine

from demobank.events.dispatcher import DEFAULT_LIMIT, PublisherFactory, dispatch_until_empty
from demobank.events.target_health import TargetHealthPolicy
from demobank.exceptions import DemoBankError

log = logging.getLogger(__name__)

MAX_ROUNDS_PER_RUN = 200
"""At most this many claims of ``DEFAULT_LIMIT`` deliveries per run (100,000); the next run goes on."""


class TargetsUnreachableError(DemoBankError):
    """Some targets could not be reached; everything else was dispatched. The message names each target."""


def dispatch_pending(worker_id: str, *, engine: Engine | None = None,
                     publisher_factory: PublisherFactory | None = None, **options: Any) -> dict[str, Any]:
    """Dispatch everything due, then raise :class:`TargetsUnreachableError` if a target could not be reached.

    :param worker_id: names this dispatcher in the claims (host and pid are appended, so it is unique).
    :param options: passed to :func:`dispatch_until_empty` (``limit``, ``max_rounds``, ``lease_seconds`` …);
        ``policy`` defaults to the ``DEMOBANK_TARGET_*`` environment (:meth:`TargetHealthPolicy.from_env`).
    :return: the counts (claimed, delivered, retried, dead, released, lost, rounds, probes, target_errors, paused).
    """
    from demobank.db.engine import get_engine

    options.setdefault("max_rounds", MAX_ROUNDS_PER_RUN)
    options.setdefault("limit", DEFAULT_LIMIT)
    options.setdefault("policy", TargetHealthPolicy.from_env())
    report = dispatch_until_empty(engine or get_engine(), f"{worker_id}@{socket.gethostname()}:{os.getpid()}",
                                  publisher_factory, **options)
    summary = report.as_dict()
    log.info("dispatched: %s", {key: value for key, value in summary.items() if key != "target_errors"})
    if report.target_errors:
        errors = "; ".join(f"{name}: {message}" for name, message in sorted(report.target_errors.items()))
        paused = "".join(f" PAUSED {name}: {reason}." for name, reason in sorted(report.paused.items()))
        raise TargetsUnreachableError(
            f"{len(report.target_errors)} target(s) could not be reached; each backs off as a whole and is probed "
            f"again later, and pauses itself after failing continuously (other targets were served: "
            f"{report.delivered} delivered): {errors}.{paused}")
    return summary
