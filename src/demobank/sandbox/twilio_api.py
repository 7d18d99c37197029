"""The part of Twilio's REST API (2010-04-01 Messages) that the suite calls.

Routes (relative to wherever the app is mounted; point ``client.api.base_url`` there):

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` → 201 Message resource
- ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`` → 200 Message resource
- ``GET /2010-04-01/Accounts/{AccountSid}/Messages.json`` → 200 list page (see :func:`list_query`), what
  ``client.messages.list(...)`` / ``.stream(...)`` / ``.page(...)`` read

List filters (Twilio's names; unknown parameters are ignored, as Twilio does):

- ``To``, ``From``: exact match (``To`` uses the ``to_number`` index).
- ``DateSent=YYYY-MM-DD``: messages of that UTC day. ``DateSent>=…`` / ``DateSent<=…`` (in a URL
  ``DateSent%3E=…``, i.e. the parameter name is ``DateSent>`` / ``DateSent<``): on or after / on or before,
  inclusive. Each takes ``YYYY-MM-DD`` (a whole UTC day) or an ISO 8601 date-time such as the SDK's
  ``2026-01-01T10:00:00Z`` (no offset means UTC; truncated to the second, like Twilio's timestamps; a
  date-time given as the exact ``DateSent`` counts as its day).
  **Sandbox difference:** the sandbox never "sends", so ``date_sent`` stays null in every resource; these
  filters compare the time the sandbox recorded the message (what ``date_created`` shows) instead.
- ``PageSize`` (default 50, larger values are capped at 1000), ``Page`` (page number; without a token it
  is an offset of ``Page * PageSize``), ``PageToken`` (``PA<id>`` = rows older than record ``<id>``,
  ``PB<id>`` = rows newer than it; taken from ``next_page_uri`` / ``previous_page_uri``).

Order is newest first (by record order). ``next_page_uri`` is null on the last page. The URIs are
relative to the mount point, as the SDK joins them to ``client.api.base_url``.

With the ``hang_rate`` fault, a create is recorded (and listed) like any accepted message, then left unanswered
until the client gives up.

Errors use Twilio's legacy JSON error body ``{"code", "message", "more_info", "status"}`` that the SDK turns
into :class:`twilio.base.exceptions.TwilioRestException`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from demobank.sandbox.common import REASONS, InjectedFault, SandboxContext, json_response

API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
E164_RE = re.compile(r"^\+[1-9]\d{7,14}$")
SHORT_CODE_RE = re.compile(r"^\d{3,8}$")
ALPHANUMERIC_SENDER_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MESSAGING_SERVICE_SID_RE = re.compile(r"^MG[0-9a-fA-F]{32}$")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: The list filters echoed into the page URIs, in Twilio's order.
LIST_FILTERS: tuple[str, ...] = ("To", "From", "DateSent", "DateSent>", "DateSent<")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PAGE_TOKEN_RE = re.compile(r"^P([AB])(\d{1,19})$")

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

#: Twilio error code and message per injected fault status.
_FAULT_ERRORS: dict[int, tuple[int, str]] = {
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    502: (20500, "Bad Gateway"),
    503: (20503, "Service Unavailable"),
    504: (20500, "Gateway Timeout"),
}


def twilio_error(
    code: int, message: str, status: int, *, headers: dict[str, str] | None = None, detail: str | None = None
) -> Response:
    """Return an error shaped like Twilio's.

    :param code: Twilio error code (e.g. 21211).
    :param message: Twilio's message for it.
    :param status: HTTP status.
    :param headers: extra headers.
    :param detail: Twilio's optional ``detail`` (sent with 20003).
    :return: the response.
    """
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    return json_response(body, status, headers)


def fault_response(fault: InjectedFault) -> Response:
    """Answer an injected fault the way Twilio does.

    :param fault: the fault.
    :return: the response.
    """
    code, message = _FAULT_ERRORS.get(fault.status, (20500, REASONS.get(fault.status, "Error")))
    return twilio_error(code, message, fault.status, headers=fault.retry_headers())


def segment_count(body: str) -> int:
    """Count the SMS segments of a body (GSM-7: 160/153 per segment, otherwise UCS-2: 70/67).

    :param body: the message text.
    :return: the number of segments (at least 1).
    """
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in body):
        units = len(body) + sum(1 for ch in body if ch in _GSM7_EXTENDED)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if units <= single:
        return 1
    return math.ceil(units / multi)


def _authenticate(request: Request, expected_sid: str, expected_token: str) -> str | None:
    """Return the authenticated account SID, or None if the Basic credentials are missing or wrong."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep:
        return None
    ok_user = hmac.compare_digest(user.encode(), expected_sid.encode())
    ok_password = hmac.compare_digest(password.encode(), expected_token.encode())
    return user if ok_user and ok_password else None


def _unauthorized() -> Response:
    return twilio_error(
        20003,
        "Authenticate",
        401,
        headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
        detail="Your AccountSid or AuthToken was incorrect.",
    )


def _rfc2822(now: datetime) -> str:
    return format_datetime(now)


def _validate_create(form: dict[str, list[str]]) -> Response | None:
    """Check the form fields of a message create like Twilio does; return the error, or None."""
    to = (form.get("To") or [""])[0]
    sender = (form.get("From") or [""])[0]
    service = (form.get("MessagingServiceSid") or [""])[0]
    body = (form.get("Body") or [""])[0]
    media = [m for m in form.get("MediaUrl", []) if m]
    content_sid = (form.get("ContentSid") or [""])[0]
    if not to:
        return twilio_error(21604, "A 'To' phone number is required.", 400)
    if not E164_RE.match(to):
        return twilio_error(21211, f"The 'To' number {to} is not a valid phone number.", 400)
    if not sender and not service:
        return twilio_error(21603, "A 'From' phone number is required.", 400)
    if sender and not (E164_RE.match(sender) or SHORT_CODE_RE.match(sender) or ALPHANUMERIC_SENDER_RE.match(sender)):
        return twilio_error(
            21212, f"The 'From' number {sender} is not a valid phone number, shortcode, or alphanumeric sender ID.", 400
        )
    if service and not MESSAGING_SERVICE_SID_RE.match(service):
        return twilio_error(21705, f"The Messaging Service Sid {service} is invalid.", 400)
    if sender and sender == to:
        return twilio_error(21266, "'To' and 'From' number cannot be the same: " + to, 400)
    if not body and not media and not content_sid:
        return twilio_error(21602, "Message body is required.", 400)
    if len(body) > MAX_BODY_CHARS:
        return twilio_error(21617, "The concatenated message body exceeds the 1600 character limit.", 400)
    return None


def build_message_resource(account_sid: str, form: dict[str, list[str]], now: datetime) -> dict[str, Any]:
    """Build the Message resource Twilio returns for an accepted create.

    :param account_sid: the account.
    :param form: the (valid) form fields.
    :param now: creation time.
    :return: the resource, with every field Twilio returns.
    """
    sid = "SM" + secrets.token_hex(16)
    to = form["To"][0]
    sender = (form.get("From") or [""])[0] or None
    service = (form.get("MessagingServiceSid") or [""])[0] or None
    body = (form.get("Body") or [""])[0]
    media = [m for m in form.get("MediaUrl", []) if m]
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"
    stamp = _rfc2822(now)
    # A message sent through a Messaging Service without From is "accepted" until a sender is chosen.
    status = "accepted" if service and not sender else "queued"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": stamp,
        "date_sent": None,
        "date_updated": stamp,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": sender,
        "messaging_service_sid": service,
        "num_media": str(len(media)),
        "num_segments": "0" if status == "accepted" else str(segment_count(body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {
            "media": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Media.json",
            "feedback": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Feedback.json",
        },
        "to": to,
        "uri": uri,
    }


@dataclass(frozen=True)
class ListQuery:
    """A parsed Message list request.

    :param filters: the filter parameters as given (echoed into the page URIs).
    :param to: ``To`` filter.
    :param from_: ``From`` filter.
    :param created_min: inclusive lower bound (epoch seconds) from ``DateSent`` / ``DateSent>``.
    :param created_max: exclusive upper bound (epoch seconds) from ``DateSent`` / ``DateSent<``.
    :param page_size: records per page.
    :param page: the page number.
    :param token: ``("A", id)`` for rows older than ``id``, ``("B", id)`` for newer ones, or None.
    """

    filters: tuple[tuple[str, str], ...]
    to: str | None
    from_: str | None
    created_min: float | None
    created_max: float | None
    page_size: int
    page: int
    token: tuple[str, int] | None


def _day_start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _parse_date_sent(name: str, value: str) -> tuple[float, float]:
    """Return the ``[start, end)`` epoch range a DateSent value covers.

    A date covers its UTC day; a date-time covers its (whole) second.

    :raises ValueError: if the value is neither ``YYYY-MM-DD`` nor an ISO 8601 date-time.
    """
    try:
        if _DATE_RE.match(value):
            start = _day_start(date.fromisoformat(value))
            return start, start + 86_400
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"Invalid {name} value {value!r}: use a GMT date YYYY-MM-DD or a date-time like 2026-01-31T23:59:59Z."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    start = math.floor(moment.timestamp())
    if name == "DateSent":  # an exact DateSent means "sent on that day"
        start = _day_start(moment.astimezone(UTC).date())
        return start, start + 86_400
    return float(start), float(start + 1)


def _int_param(params: dict[str, str], name: str, default: int, minimum: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ValueError(f"Invalid {name} value {raw!r}: use a whole number of at least {minimum}.")
    return value


def list_query(params: dict[str, str]) -> ListQuery:
    """Parse the query parameters of ``GET …/Messages.json``.

    :param params: the (URL-decoded) query parameters; the last value wins for repeated ones.
    :return: the parsed request.
    :raises ValueError: for a malformed date, page size, page number or page token (message says which).
    """
    filters = tuple((name, params[name]) for name in LIST_FILTERS if params.get(name))
    created_min: float | None = None
    created_max: float | None = None
    for name, value in filters:
        if not name.startswith("DateSent"):
            continue
        start, end = _parse_date_sent(name, value)
        if name in ("DateSent", "DateSent>"):
            created_min = start if created_min is None else max(created_min, start)
        if name in ("DateSent", "DateSent<"):
            created_max = end if created_max is None else min(created_max, end)
    page_size = min(_int_param(params, "PageSize", DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE)
    page = _int_param(params, "Page", 0, 0)
    token: tuple[str, int] | None = None
    raw_token = params.get("PageToken")
    if raw_token:
        match = _PAGE_TOKEN_RE.match(raw_token)
        if match is None:
            raise ValueError(
                f"Invalid PageToken {raw_token!r}: use the next_page_uri or previous_page_uri of a previous page."
            )
        token = (match.group(1), int(match.group(2)))
    found = dict(filters)
    return ListQuery(
        filters=filters,
        to=found.get("To"),
        from_=found.get("From"),
        created_min=created_min,
        created_max=created_max,
        page_size=page_size,
        page=page,
        token=token,
    )


def _list_uri(account_sid: str, query: ListQuery, page: int, token: str | None) -> str:
    params: list[tuple[str, Any]] = [*query.filters, ("PageSize", query.page_size), ("Page", page)]
    if token is not None:
        params.append(("PageToken", token))
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages.json?{urlencode(params)}"


def list_page_body(account_sid: str, query: ListQuery, rows: list[tuple[int, str]], has_more: bool) -> bytes:
    """Build Twilio's list page JSON around the stored resources (which are spliced in, not re-encoded).

    :param account_sid: the account.
    :param query: the parsed request.
    :param rows: at most ``page_size`` ``(id, resource JSON)`` pairs, newest first.
    :param has_more: whether older rows exist after this page.
    :return: the response body.
    """
    page = query.page
    start = page * query.page_size
    first_page = _list_uri(account_sid, query, 0, None)
    next_uri = _list_uri(account_sid, query, page + 1, f"PA{rows[-1][0]}") if has_more and rows else None
    previous_uri: str | None = None
    if page > 0:
        if query.token is None:  # offset paging: go back by number
            previous_uri = _list_uri(account_sid, query, page - 1, None)
        elif rows:
            previous_uri = _list_uri(account_sid, query, page - 1, f"PB{rows[0][0]}")
    token = None if query.token is None else f"P{query.token[0]}{query.token[1]}"
    meta = {
        "end": start + max(len(rows) - 1, 0),
        "first_page_uri": first_page,
        "next_page_uri": next_uri,
        "page": page,
        "page_size": query.page_size,
        "previous_page_uri": previous_uri,
        "start": start,
        "uri": _list_uri(account_sid, query, page, token),
    }
    records = ",".join(resource for _, resource in rows)
    return ('{"messages":[' + records + "]," + json.dumps(meta, separators=(",", ":"))[1:]).encode("utf-8")


def create_router(ctx: SandboxContext) -> APIRouter:
    """Build the Twilio routes.

    :param ctx: settings and store.
    :return: the router.
    """
    router = APIRouter(tags=["twilio"])
    settings = ctx.settings

    @router.post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json")
    async def create_message(account_sid: str, request: Request) -> Response:
        with ctx.sending("sms"):
            return await _create_message(account_sid, request)

    async def _create_message(account_sid: str, request: Request) -> Response:
        fault, hang = await ctx.enter_send("sms")
        user = _authenticate(request, settings.twilio_account_sid, settings.twilio_auth_token)
        if user is None or user != account_sid:
            return _unauthorized()
        if fault is not None:
            return fault_response(fault)
        raw = await request.body()
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return twilio_error(20001, "Invalid request: the form body is not UTF-8.", 400)
        error = _validate_create(form)
        if error is not None:
            return error
        resource = build_message_resource(account_sid, form, datetime.now(UTC))
        await run_in_threadpool(ctx.store.record_sms, resource)
        if hang is not None:  # accepted and recorded, but the client never hears of it
            await hang.hold(request)
        return json_response(resource, 201)

    @router.get(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json")
    async def list_messages(account_sid: str, request: Request) -> Response:
        fault = await ctx.enter("sms")
        user = _authenticate(request, settings.twilio_account_sid, settings.twilio_auth_token)
        if user is None or user != account_sid:
            return _unauthorized()
        if fault is not None:
            return fault_response(fault)
        try:
            query = list_query(dict(request.query_params))
        except ValueError as exc:
            return twilio_error(20001, str(exc), 400)
        backwards = query.token is not None and query.token[0] == "B"
        forwards = query.token is not None and query.token[0] == "A"
        rows = await run_in_threadpool(
            ctx.store.page_sms,
            account_sid,
            to=query.to,
            from_=query.from_,
            created_min=query.created_min,
            created_max=query.created_max,
            before_id=query.token[1] if forwards and query.token else None,
            after_id=query.token[1] if backwards and query.token else None,
            offset=0 if query.token else query.page * query.page_size,
            limit=query.page_size + (0 if backwards else 1),
        )
        if backwards:
            has_more = True  # the rows after this page are the ones the client came from
        else:
            has_more = len(rows) > query.page_size
            rows = rows[: query.page_size]
        return Response(content=list_page_body(account_sid, query, rows, has_more), media_type="application/json")

    @router.get(f"/{API_VERSION}/Accounts/{{account_sid}}.json")
    async def fetch_account(account_sid: str, request: Request) -> Response:
        """The Account resource: what ``TwilioHook.test_connection()`` fetches."""
        user = _authenticate(request, settings.twilio_account_sid, settings.twilio_auth_token)
        if user is None or user != account_sid:
            return _unauthorized()
        created = _rfc2822(datetime(2026, 1, 1, tzinfo=UTC))
        return json_response({
            "sid": account_sid,
            "owner_account_sid": account_sid,
            "auth_token": None,
            "friendly_name": "Demo Bank sandbox account",
            "status": "active",
            "type": "Full",
            "date_created": created,
            "date_updated": created,
            "uri": f"/{API_VERSION}/Accounts/{account_sid}.json",
            "subresource_uris": {"messages": f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"},
        })

    @router.get(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages/{{sid}}.json")
    async def fetch_message(account_sid: str, sid: str, request: Request) -> Response:
        fault = await ctx.enter("sms")
        user = _authenticate(request, settings.twilio_account_sid, settings.twilio_auth_token)
        if user is None or user != account_sid:
            return _unauthorized()
        if fault is not None:
            return fault_response(fault)
        resource = await run_in_threadpool(ctx.store.get_sms, sid, account_sid)
        if resource is None:
            return twilio_error(
                20404,
                f"The requested resource /{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json was not found",
                404,
            )
        return json_response(resource)

    return router
