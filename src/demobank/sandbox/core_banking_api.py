"""A demo core banking customer API: the REST source of the ``data_factory_customer_sync`` DAG in ``make run``.

``GET /core-banking/customers?updated_since=<RFC 3339>&page=<n>&page_size=<k>`` with ``Authorization: Bearer
<token>`` answers the customers of the core banking source database (the same generated customers the
transactions pipeline's accounts belong to), changed at or after ``updated_since``, oldest change first (then by
id), one page at a time::

    {"customers": [{"customer_id": "CUST-100001", "full_name": …, "email": …, "customer_type": "individual",
                    "segment": "retail", "country_of_residence": "DE", "preferred_language": "de",
                    "onboarding_channel": "mobile_app", "kyc_status": "verified", "marketing_consent": false,
                    "created_at": "2025-07-19T05:08:08Z", "updated_at": "2025-07-19T05:08:08Z"}, …],
     "page": 1, "page_size": 500, "total": 20000, "next_page": 2}

``next_page`` is ``null`` on the last page. Errors: 401 (token), 400 (a parameter, the message says which and
what is expected), 503 (the source database is missing).
"""

from __future__ import annotations

import hmac
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from demobank.sandbox.common import SandboxContext, json_response

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 500
_FIELDS = ("customer_id", "full_name", "email", "customer_type", "segment", "country_of_residence",
           "preferred_language", "onboarding_channel", "kyc_status", "marketing_consent", "created_at", "updated_at")

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def source_url(ctx: SandboxContext) -> str:
    """The core banking source database the API reads."""
    configured = ctx.settings.core_banking_url
    if configured:
        return configured
    return f"sqlite:///{Path(ctx.settings.db_path).resolve().parent / 'core_banking.db'}"


def _engine(url: str) -> Engine:
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite:///") and "mode=ro" not in url:
                path = url.removeprefix("sqlite:///")
                engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", connect_args={"timeout": 30})
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _engines[url] = engine
        return engine


def normalise_timestamp(value: str) -> str:
    """An RFC 3339 timestamp as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (the source's format, so that text compares).

    :raises ValueError: for anything else.
    """
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _page(url: str, since: str, page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
    with _engine(url).connect() as connection:
        total = int(connection.execute(text("SELECT count(*) FROM customers WHERE updated_at >= :since"),
                                       {"since": since}).scalar() or 0)
        rows = connection.execute(
            text(f"SELECT {', '.join(_FIELDS)} FROM customers WHERE updated_at >= :since "  # noqa: S608 - fixed names
                 "ORDER BY updated_at, customer_id LIMIT :limit OFFSET :offset"),
            {"since": since, "limit": page_size, "offset": (page - 1) * page_size},
        ).all()
    customers = []
    for row in rows:
        record = dict(zip(_FIELDS, row, strict=True))
        consent = record["marketing_consent"]
        record["marketing_consent"] = None if consent is None else str(consent).lower() in ("true", "1", "t")
        customers.append(record)
    return customers, total


def create_router(ctx: SandboxContext) -> APIRouter:
    """Build the demo core banking API's routes.

    :param ctx: settings (token, source database) and store.
    """
    router = APIRouter(tags=["core banking (demo)"])

    def bad(message: str, status: int = 400) -> Response:
        return json_response({"detail": message}, status)

    @router.get("/core-banking/customers")
    async def customers(request: Request, updated_since: str | None = None, page: str = "1",
                        page_size: str = str(DEFAULT_PAGE_SIZE)) -> Response:
        supplied = request.headers.get("authorization", "")
        expected = f"Bearer {ctx.settings.core_banking_token}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            return bad("missing or wrong bearer token: send Authorization: Bearer <the core_banking_api "
                       "connection's password>", 401)
        try:
            page_number = int(page)
            size = int(page_size)
        except ValueError:
            return bad(f"page={page!r} and page_size={page_size!r} must be whole numbers")
        if page_number < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            return bad(f"page must be 1 or more and page_size 1 to {MAX_PAGE_SIZE}, got page={page_number}, "
                       f"page_size={size}")
        since = "0000-01-01T00:00:00Z"
        if updated_since:
            try:
                since = normalise_timestamp(updated_since)
            except ValueError:
                return bad(f"updated_since={updated_since!r} is not an RFC 3339 timestamp with a time zone, e.g. "
                           "2026-01-05T00:00:00Z")
        url = source_url(ctx)
        try:
            rows, total = await run_in_threadpool(_page, url, since, page_number, size)
        except SQLAlchemyError as error:
            return bad(f"the core banking source is not available ({type(error).__name__}): seed it with "
                       "python -m demobank.data_factory.core_banking seed", 503)
        more = page_number * size < total
        return json_response({"customers": rows, "page": page_number, "page_size": size, "total": total,
                              "next_page": page_number + 1 if more else None})

    return router
