"""The part of SendGrid's v3 API that the suite calls: ``POST /v3/mail/send``.

Point ``SendGridAPIClient(api_key, host=...)`` at wherever the app is mounted. Answers like SendGrid:
202 with an empty body and ``X-Message-Id`` when queued; 200 with an empty body (nothing delivered) in sandbox
mode; 400/401/413/415 with ``{"errors": [{"message", "field", "help"}]}`` that ``python_http_client`` turns into
``BadRequestsError``, ``UnauthorizedError``, ``PayloadTooLargeError``, ``UnsupportedMediaTypeError``.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from demobank.sandbox.common import REASONS, InjectedFault, SandboxContext, json_response

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
HELP_BASE = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
EMAIL_RE = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\".]+$")
TEMPLATE_ID_RE = re.compile(r"^d-[0-9a-fA-F]{32}$")

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


def create_router(ctx: SandboxContext) -> APIRouter:
    """Build the SendGrid routes.

    :param ctx: settings and store.
    :return: the router.
    """
    router = APIRouter(tags=["sendgrid"])
    settings = ctx.settings
    expected_auth = f"Bearer {settings.sendgrid_api_key}".encode()

    @router.get("/v3/scopes")
    async def scopes(request: Request) -> Response:
        """The API key's scopes: what ``SendGridHook.test_connection()`` reads."""
        auth = request.headers.get("authorization")
        if auth is None:
            return errors_response([sendgrid_error("authorization required")], 401)
        if not hmac.compare_digest(auth.encode(), expected_auth):
            return errors_response(
                [sendgrid_error("The provided authorization grant is invalid, expired, or revoked")], 401
            )
        return json_response({"scopes": ["mail.send"]}, 200)

    @router.post("/v3/mail/send")
    async def mail_send(request: Request) -> Response:
        fault = await ctx.enter("email")
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
        auth = request.headers.get("authorization")
        if auth is None:
            return errors_response([sendgrid_error("authorization required")], 401)
        if not hmac.compare_digest(auth.encode(), expected_auth):
            return errors_response(
                [sendgrid_error("The provided authorization grant is invalid, expired, or revoked")], 401
            )
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
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    return router
