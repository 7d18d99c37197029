"""The outbox as an Airflow Asset: a publisher marks it updated, and that starts ``events_dispatch`` at once.

* Tasks that publish declare ``outlets=[OUTBOX_ASSET]``: Airflow records the asset event when the task succeeds.
* The plugin's ``POST /demobank/api/v1/events`` (in the API server, next to Airflow's metadata DB) calls
  :func:`announce_outbox_update` after committing the events.

The asset event is only a wake-up call: the outbox table is the truth, and ``events_dispatch``'s short schedule
sweeps it anyway, so a missed announcement delays delivery by at most one sweep, it never loses an event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset

log = logging.getLogger(__name__)

OUTBOX_ASSET = Asset(name="demobank_event_outbox", uri="demobank://events/outbox", group="demobank-events")


def announce_outbox_update(extra: Mapping[str, Any] | None = None) -> bool:
    """Record an asset event on :data:`OUTBOX_ASSET` (from a process with Airflow's metadata DB, e.g. the API
    server); return whether it was recorded. Never raises: the sweep delivers what an announcement misses."""
    try:
        from airflow.assets.manager import asset_manager
        from airflow.serialization.definitions.assets import SerializedAssetUniqueKey
        from airflow.utils.session import create_session

        with create_session() as session:
            event = asset_manager.register_asset_change(
                asset=SerializedAssetUniqueKey(name=OUTBOX_ASSET.name, uri=OUTBOX_ASSET.uri),
                extra=dict(extra or {}), source_is_api=True, api_user_teams=set(), session=session)
    except Exception:
        log.warning("could not announce the outbox update; the events_dispatch sweep will deliver the events",
                    exc_info=True)
        return False
    if event is None:
        log.warning("the asset %s is not known to Airflow yet (is the events_dispatch DAG parsed?); the sweep will "
                    "deliver the events", OUTBOX_ASSET.uri)
    return event is not None
