"""The part of SendGrid's v3 API that the suite calls: ``POST /v3/mail/send`` and ``GET /v3/messages``.

Point ``SendGridAPIClient(api_key, host=...)`` at wherever the app is mounted. Answers like SendGrid:
202 with an empty body and ``X-Message-Id`` when queued; 200 with an empty body (nothing delivered) in sandbox
mode; 400/401/413/415 with ``{"errors": [{"message", "field", "help"}]}`` that ``python_http_client`` turns into
``BadRequestsError``, ``UnauthorizedError``, ``PayloadTooLargeError``, ``UnsupportedMediaTypeError``.

``GET /v3/messages?query=…&limit=N`` is the Email Activity API (what a connector reads after a crash to learn
whether SendGrid already accepted a message; ``client.client.messages.get(query_params={"query": …,
"limit": 10})``). It answers ``{"messages": [...]}`` with one entry per recipient (to, cc and bcc) of every
recorded send that matches, newest first, each ``{"from_email", "msg_id", "subject", "to_email", "status":
"delivered", "opens_count": 0, "clicks_count": 0, "last_event_time"}``. ``msg_id`` is the send's
``X-Message-Id`` followed by ``.filter0001.<n>.0`` (``n`` = the recipient's position in the request), so
``msg_id.startswith(x_message_id + ".")`` links the two, as with SendGrid. The query forms understood (see
:func:`parse_activity_query`) are::

    unique_args['KEY']="VALUE"     the recipient's custom_args (message-level merged with its personalization's,
                                   the personalization's value winning, as SendGrid merges them) has KEY = VALUE
    to_email="addr"                the recipient is addr (case-insensitive)
    CLAUSE AND CLAUSE ...          all of them

An empty or missing ``query`` lists the newest recipients. Anything else is a 400 naming the ``query`` field.
``limit`` is 1..1000 (default 10). Sends made in sandbox mode were not recorded and are not listed.

With the ``hang_rate`` fault, a mail send is recorded (and found by Email Activity at once: the sandbox has none of
SendGrid's lag) like any accepted send, then left unanswered until the client gives up.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from demobank.sandbox.common import REASONS, InjectedFault, SandboxContext, json_response
from demobank.sandbox.store import SandboxStore, custom_arg_term, recipient_term

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
HELP_BASE = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
EMAIL_RE = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\".]+$")
TEMPLATE_ID_RE = re.compile(r"^d-[0-9a-fA-F]{32}$")
DEFAULT_ACTIVITY_LIMIT = 10
MAX_ACTIVITY_LIMIT = 1000
#: One clause of the Email Activity query: unique_args['KEY']="VALUE" or to_email="VALUE".
_CLAUSE_RE = re.compile(
    r"""\s*(?:unique_args\['(?P<key>(?:[^'\\]|\\.)+)'\]|(?P<to>to_email))\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*"""
)
_LIMIT_RE = re.compile(r"^[0-9]{1,7}$")
_AND_RE = re.compile(r"AND\b", re.IGNORECASE)
_UNESCAPE_RE = re.compile(r"\\(.)")

_FROM_REQUIRED = (
    "The from object must be provided for every email send. It is an object that requires the email "
    'parameter, but may also contain a name parameter.  e.g. {"email" : "example@example.com"}  or '
    '{"email" : "example@example.com", "name" : "Example Recipient"}.'
)
_TO_REQUIRED = (
    "The to array is required for all personalization objects, and must have at least one email object "
    "with a valid email address."
)
_SUBJECT_REQUIRED = (
    "The subject is required. You can get around this requirement if you use a template with a subject "
    "defined or if every personalization has a subject defined."
)
_CONTENT_REQUIRED = (
    "Unless a valid template_id is provided, the content parameter is required. There must be at least one "
    "defined content block. We typically suggest both text/plain and text/html blocks are included, but "
    "only one block is required."
)


def sendgrid_error(message: str, field: str | None = None, help_anchor: str | None = None) -> dict[str, Any]:
    """Build one entry of SendGrid's ``errors`` array.

    :param message: what was wrong.
    :param field: the offending field path (``personalizations.0.to``), or None.
    :param help_anchor: anchor in SendGrid's error documentation, or None for ``help: null``.
    :return: the entry.
    """
    return {
        "message": message,
        "field": field,
        "help": f"{HELP_BASE}#message.{help_anchor}" if help_anchor else None,
    }


def errors_response(errors: list[dict[str, Any]], status: int, headers: dict[str, str] | None = None) -> Response:
    """Return SendGrid's error body.

    :param errors: entries from :func:`sendgrid_error`.
    :param status: HTTP status.
    :param headers: extra headers.
    :return: the response.
    """
    return json_response({"errors": errors}, status, headers)


def fault_response(fault: InjectedFault) -> Response:
    """Answer an injected fault the way SendGrid does.

    :param fault: the fault.
    :return: the response.
    """
    headers = fault.retry_headers()
    if fault.status == 429:
        headers.update(
            {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + fault.retry_after),
            }
        )
        message = "too many requests"
    else:
        message = REASONS.get(fault.status, "error").lower()
    return errors_response([sendgrid_error(message)], fault.status, headers)


def _is_email(value: Any) -> bool:
    return isinstance(value, str) and bool(EMAIL_RE.match(value))


def _check_address_list(
    value: Any, path: str, kind: str, seen: dict[str, str], errors: list[dict[str, Any]]
) -> list[str]:
    """Validate a to/cc/bcc array; return its addresses."""
    if not isinstance(value, list) or (kind == "to" and not value):
        message = (
            _TO_REQUIRED
            if kind == "to"
            else (
                f"The {kind} array, when used, must at least have an email parameter with a valid email address "
                'and it may also contain a name parameter. e.g. {"email" : "example@example.com"} or '
                '{"email" : "example@example.com", "name" : "Example Recipient"}.'
            )
        )
        errors.append(sendgrid_error(message, f"{path}.{kind}", f"personalizations.{kind}"))
        return []
    addresses: list[str] = []
    for j, entry in enumerate(value):
        email = entry.get("email") if isinstance(entry, dict) else None
        if not _is_email(email):
            errors.append(
                sendgrid_error(
                    "Does not contain a valid address.", f"{path}.{kind}.{j}.email", f"personalizations.{kind}"
                )
            )
            continue
        assert isinstance(email, str)
        key = email.lower()
        if key in seen:
            errors.append(
                sendgrid_error(
                    "Each email address in the personalization block should be unique between to, cc, and bcc. "
                    f"We found the first duplicate instance of [{email}] in the {path}.{kind} field.",
                    path,
                    "personalizations",
                )
            )
            continue
        seen[key] = kind
        addresses.append(email)
    return addresses


def validate_mail(body: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Validate a v3 mail send body the way SendGrid does.

    :param body: the decoded JSON.
    :return: (errors, recipients): SendGrid-shaped errors (empty if valid) and every to/cc/bcc address.
    """
    errors: list[dict[str, Any]] = []
    recipients: list[str] = []
    if not isinstance(body, dict):
        return [sendgrid_error("Bad Request")], []

    template_id = body.get("template_id")
    has_template = template_id is not None
    if has_template and not (isinstance(template_id, str) and TEMPLATE_ID_RE.match(template_id)):
        errors.append(
            sendgrid_error(
                f"The template_id must be a valid GUID, you provided '{template_id}'.", "template_id", "template_id"
            )
        )

    personalizations = body.get("personalizations")
    all_have_subject = False
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            sendgrid_error(
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                "personalizations",
            )
        )
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            sendgrid_error(
                f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations per API "
                f"request. You have provided {len(personalizations)} personalizations. Please consider splitting "
                "this into multiple requests and resending your request.",
                "personalizations",
                "personalizations",
            )
        )
    else:
        all_have_subject = True
        for i, p in enumerate(personalizations):
            path = f"personalizations.{i}"
            if not isinstance(p, dict):
                errors.append(sendgrid_error(_TO_REQUIRED, f"{path}.to", "personalizations.to"))
                all_have_subject = False
                continue
            seen: dict[str, str] = {}
            recipients += _check_address_list(p.get("to"), path, "to", seen, errors)
            for kind in ("cc", "bcc"):
                if kind in p:
                    recipients += _check_address_list(p[kind], path, kind, seen, errors)
            subject = p.get("subject")
            if subject is not None and not (isinstance(subject, str) and subject):
                errors.append(
                    sendgrid_error(
                        "The subject of a personalization must be a string at least one character in length.",
                        f"{path}.subject",
                        "personalizations.subject",
                    )
                )
            if not (isinstance(subject, str) and subject):
                all_have_subject = False
        if len(recipients) > MAX_RECIPIENTS:
            errors.append(
                sendgrid_error(
                    f"The total number of recipients must be less than {MAX_RECIPIENTS}. This includes all "
                    "recipients defined within the to, cc, and bcc parameters, across each object that you "
                    "include in the personalizations array.",
                    "personalizations",
                    "personalizations",
                )
            )

    sender = body.get("from")
    sender_email = sender.get("email") if isinstance(sender, dict) else None
    if sender_email is None or sender_email == "":
        errors.append(sendgrid_error(_FROM_REQUIRED, "from.email", "from"))
    elif not _is_email(sender_email):
        errors.append(sendgrid_error("The from email does not contain a valid address.", "from.email", "from"))

    reply_to = body.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, dict) and _is_email(reply_to.get("email"))):
        errors.append(
            sendgrid_error("The reply_to email does not contain a valid address.", "reply_to.email", "reply_to")
        )

    subject = body.get("subject")
    if subject is not None and not isinstance(subject, str):
        errors.append(sendgrid_error("The subject must be a string.", "subject", "subject"))
    elif not subject and not has_template and not all_have_subject:
        errors.append(sendgrid_error(_SUBJECT_REQUIRED, "subject", "subject"))

    content = body.get("content")
    if content is None or content == []:
        if not has_template:
            errors.append(sendgrid_error(_CONTENT_REQUIRED, "content", "content"))
    elif not isinstance(content, list):
        errors.append(sendgrid_error(_CONTENT_REQUIRED, "content", "content"))
    else:
        types: list[str] = []
        for i, block in enumerate(content):
            ctype = block.get("type") if isinstance(block, dict) else None
            value = block.get("value") if isinstance(block, dict) else None
            if not (isinstance(ctype, str) and ctype):
                errors.append(
                    sendgrid_error(
                        "The content type must be a string at least one character in length.",
                        f"content.{i}.type",
                        "content.type",
                    )
                )
            else:
                types.append(ctype.lower())
            if not (isinstance(value, str) and value):
                errors.append(
                    sendgrid_error(
                        "The content value must be a string at least one character in length.",
                        f"content.{i}.value",
                        "content.value",
                    )
                )
        expected_order = [t for t in ("text/plain", "text/html") if t in types]
        if types[: len(expected_order)] != expected_order:
            errors.append(
                sendgrid_error(
                    "If present, text/plain must be first, followed by text/html, followed by any other content.",
                    "content",
                    "content",
                )
            )

    attachments = body.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list):
            errors.append(sendgrid_error("The attachments parameter must be an array.", "attachments", "attachments"))
        else:
            for i, att in enumerate(attachments):
                att = att if isinstance(att, dict) else {}
                if not (isinstance(att.get("content"), str) and att["content"]):
                    errors.append(
                        sendgrid_error(
                            "The attachment content is required.", f"attachments.{i}.content", "attachments.content"
                        )
                    )
                if not (isinstance(att.get("filename"), str) and att["filename"]):
                    errors.append(
                        sendgrid_error(
                            "The attachment filename parameter is required.",
                            f"attachments.{i}.filename",
                            "attachments.filename",
                        )
                    )
    return errors, recipients


def _sandbox_mode(body: dict[str, Any]) -> bool:
    settings = body.get("mail_settings")
    if not isinstance(settings, dict):
        return False
    mode = settings.get("sandbox_mode")
    return isinstance(mode, dict) and mode.get("enable") is True


def _subject_of(body: dict[str, Any]) -> str | None:
    subject = body.get("subject")
    if isinstance(subject, str) and subject:
        return subject
    for p in body.get("personalizations") or ():
        if isinstance(p.get("subject"), str) and p["subject"]:
            return str(p["subject"])
    return None


async def _read_limited(request: Request, limit: int) -> tuple[bytes | None, int]:
    """Read the body, or only drain it if it is larger than ``limit`` (so the client sees the 413)."""
    declared = request.headers.get("content-length")
    too_big = declared is not None and declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            too_big = True
        if not too_big:
            chunks.append(chunk)
    return (None if too_big else b"".join(chunks)), max(total, int(declared) if declared and declared.isdigit() else 0)


@dataclass(frozen=True)
class ActivityQuery:
    """A parsed Email Activity query: every condition must hold for a recipient to be listed.

    :param args: ``(KEY, VALUE)`` pairs from ``unique_args['KEY']="VALUE"``.
    :param to_emails: lower-cased addresses from ``to_email="addr"``.
    """

    args: tuple[tuple[str, str], ...] = ()
    to_emails: tuple[str, ...] = ()


def _parse_clauses(text: str) -> ActivityQuery | None:
    args: list[tuple[str, str]] = []
    to_emails: list[str] = []
    pos = 0
    while True:
        match = _CLAUSE_RE.match(text, pos)
        if match is None:
            return None
        value = _UNESCAPE_RE.sub(r"\1", match.group("value"))
        if match.group("to"):
            to_emails.append(value.lower())
        else:
            args.append((_UNESCAPE_RE.sub(r"\1", match.group("key")), value))
        pos = match.end()
        if pos == len(text):
            return ActivityQuery(args=tuple(args), to_emails=tuple(to_emails))
        # Clauses are separated by AND with whitespace on both sides (the clause pattern ate the left one).
        if not text[pos - 1].isspace():
            return None
        sep = _AND_RE.match(text, pos)
        if sep is None:
            return None
        pos = sep.end()
        if pos == len(text) or not text[pos].isspace():
            return None


def parse_activity_query(query: str) -> ActivityQuery:
    """Parse an Email Activity ``query`` (already URL-decoded once by the framework).

    A query that does not parse but still contains ``%`` escapes (a client that encoded it twice) is decoded
    once more and parsed again.

    :param query: e.g. ``unique_args['outbox_id']="42" AND to_email="alice@example.com"``.
    :return: the conditions (none for an empty query).
    :raises ValueError: if the query uses anything but the supported forms.
    """
    text = query.strip()
    if not text:
        return ActivityQuery()
    parsed = _parse_clauses(text)
    if parsed is None and "%" in text:
        parsed = _parse_clauses(unquote(text).strip())
    if parsed is None:
        raise ValueError(
            f"invalid query {query!r}: this sandbox understands unique_args['KEY']=\"VALUE\" and "
            'to_email="address" clauses joined with AND'
        )
    return parsed


def _custom_args(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def search_activity(store: SandboxStore, query: ActivityQuery, limit: int) -> list[dict[str, Any]]:
    """Find recorded recipients matching ``query``, newest send first (runs in a worker thread).

    The store's ``email_search`` index (caught up with any new sends first) narrows the sends to those holding
    every address and custom_args pair of the query; the exact per-recipient match (merged custom_args) is
    done here.

    :param store: the :class:`~demobank.sandbox.store.SandboxStore`.
    :param query: the parsed query.
    :param limit: at most this many entries.
    :return: the Email Activity entries.
    """
    terms = [recipient_term(a) for a in query.to_emails] + [custom_arg_term(k, v) for k, v in query.args]
    found: list[dict[str, Any]] = []
    rows = store.iter_emails(sorted(set(terms)))
    with contextlib.closing(rows):
        for row in rows:
            if _collect(row, query, limit, found):
                break
    return found


def _collect(
    row: tuple[int, float, str, str, str | None, str], query: ActivityQuery, limit: int, found: list[dict[str, Any]]
) -> bool:
    """Append the matching recipients of one recorded send to ``found``; return True once ``limit`` is reached."""
    _row_id, created_at, message_id, from_email, _subject, raw = row
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    message_args = _custom_args(body.get("custom_args"))
    message_subject = body.get("subject") if isinstance(body.get("subject"), str) and body.get("subject") else None
    last_event = datetime.fromtimestamp(created_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    position = 0
    for p in body.get("personalizations") or ():
        effective = {**message_args, **_custom_args(p.get("custom_args"))}
        args_match = all(effective.get(k) == v for k, v in query.args)
        # A personalization's subject overrides the message's, as in SendGrid.
        subject = p.get("subject") if isinstance(p.get("subject"), str) and p.get("subject") else message_subject
        for kind in ("to", "cc", "bcc"):
            for entry in p.get(kind) or ():
                position += 1
                address = entry.get("email") if isinstance(entry, dict) else None
                if not args_match or not isinstance(address, str):
                    continue
                if any(address.lower() != wanted for wanted in query.to_emails):
                    continue
                found.append(
                    {
                        "from_email": from_email,
                        "msg_id": f"{message_id}.filter0001.{position}.0",
                        "subject": subject,
                        "to_email": address,
                        "status": "delivered",
                        "opens_count": 0,
                        "clicks_count": 0,
                        "last_event_time": last_event,
                    }
                )
                if len(found) >= limit:
                    return True
    return False


def create_router(ctx: SandboxContext) -> APIRouter:
    """Build the SendGrid routes.

    :param ctx: settings and store.
    :return: the router.
    """
    router = APIRouter(tags=["sendgrid"])
    settings = ctx.settings
    expected_auth = f"Bearer {settings.sendgrid_api_key}".encode()

    def check_auth(request: Request) -> Response | None:
        auth = request.headers.get("authorization")
        if auth is None:
            return errors_response([sendgrid_error("authorization required")], 401)
        if not hmac.compare_digest(auth.encode(), expected_auth):
            return errors_response(
                [sendgrid_error("The provided authorization grant is invalid, expired, or revoked")], 401
            )
        return None

    @router.get("/v3/scopes")
    async def scopes(request: Request) -> Response:
        """The API key's scopes: what ``SendGridHook.test_connection()`` reads."""
        denied = check_auth(request)
        if denied is not None:
            return denied
        return json_response({"scopes": ["mail.send"]}, 200)

    @router.get("/v3/messages")
    async def email_activity(request: Request) -> Response:
        """Email Activity: which recipients of which recorded sends match ``query`` (see the module doc)."""
        fault = await ctx.enter("email")
        denied = check_auth(request)
        if denied is not None:
            return denied
        if fault is not None:
            return fault_response(fault)
        params = request.query_params
        raw_limit = params.get("limit") or str(DEFAULT_ACTIVITY_LIMIT)
        if not _LIMIT_RE.match(raw_limit) or not 1 <= int(raw_limit) <= MAX_ACTIVITY_LIMIT:
            message = f"limit must be a whole number from 1 to {MAX_ACTIVITY_LIMIT}, got {raw_limit!r}."
            return errors_response([sendgrid_error(message, "limit")], 400)
        try:
            query = parse_activity_query(params.get("query") or "")
        except ValueError as exc:
            return errors_response([sendgrid_error(str(exc), "query")], 400)
        found = await run_in_threadpool(search_activity, ctx.store, query, int(raw_limit))
        return json_response({"messages": found})

    @router.post("/v3/mail/send")
    async def mail_send(request: Request) -> Response:
        with ctx.sending("email"):
            return await _mail_send(request)

    async def _mail_send(request: Request) -> Response:
        fault, hang = await ctx.enter_send("email")
        raw, size = await _read_limited(request, settings.sendgrid_max_body_bytes)
        if raw is None:
            return errors_response(
                [
                    sendgrid_error(
                        f"The request body is {size} bytes, more than the {settings.sendgrid_max_body_bytes} bytes "
                        "this endpoint accepts (SendGrid's limit is 30 MB including attachments). Shrink or remove "
                        "attachments, or split the send into several requests."
                    )
                ],
                413,
            )
        denied = check_auth(request)
        if denied is not None:
            return denied
        if fault is not None:
            return fault_response(fault)
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return errors_response([sendgrid_error("Content-Type should be application/json.")], 415)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return errors_response([sendgrid_error("Bad Request")], 400)
        errors, recipients = validate_mail(body)
        if errors:
            return errors_response(errors, 400)
        if _sandbox_mode(body):
            return Response(status_code=200)
        message_id = secrets.token_urlsafe(16)
        await run_in_threadpool(
            ctx.store.record_email,
            message_id=message_id,
            from_email=body["from"]["email"],
            subject=_subject_of(body),
            recipients=recipients,
            request=raw,
        )
        if hang is not None:  # accepted and recorded (Email Activity finds it), but the client never hears of it
            await hang.hold(request)
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    return router
