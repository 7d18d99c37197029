"""Sending SMS and e-mail exactly once: validation, the delivery ledger, retries, rate limits and batching.

Airflow-free: the operators in :mod:`demobank.connect.operators` are thin wrappers around
:class:`SmsDelivery` and :class:`EmailDelivery`, which take a hook, a ledger and the task instance's scope.

* Everything is validated before the first message goes out: a bad input sends nothing.
* Each message is claimed in the ledger before its send and marked accepted right after the provider's
  answer; an earlier attempt's accepted messages are skipped, and one that may have been sent before its
  answer was recorded is looked up at the provider before it is sent again.
* 429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter, waiting at least
  what the provider's ``Retry-After`` asks; other errors fail at once with the provider's code and a hint.
  Bad credentials stop the whole batch.
* SMS are paced to the sender's rate (messages per second) with several requests in flight; e-mails go in
  requests of up to 1000 personalizations (one per recipient).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from demobank.connect.ledger import DeliveryLedger, DeliveryScope, LedgerEntry
from demobank.connect.recipients import (
    MAX_SMS_BODY,
    as_list,
    invalid_email_addresses,
    invalid_phone_numbers,
    mask,
    mask_email,
    mask_phone,
)
from demobank.db.models import DeliveryStatus
from demobank.exceptions import DemoBankError
from demobank.retry import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

DELIVERY_KEY_ARG = "demobank_delivery"
"""SendGrid ``custom_args`` key carrying a recipient's idempotency key (found again by the Email Activity API)."""


class DeliveryFailed(DemoBankError):
    """Some messages were refused or could not be delivered; ``failures`` says which (masked) and why."""

    def __init__(self, channel: str, failures: Sequence[tuple[str, str, str]], accepted: int, total: int) -> None:
        self.failures = list(failures)
        lines = [f"  {recipient}: {message}" for recipient, _code, message in self.failures[:20]]
        more = f"\n  … and {len(self.failures) - 20} more" if len(self.failures) > 20 else ""
        super().__init__(
            f"{len(self.failures)} of {total} {channel} message(s) not delivered ({accepted} accepted; a retry of "
            f"this task re-sends only the ones not accepted):\n" + "\n".join(lines) + more
        )


# -- inputs -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsMessage:
    """One SMS: an E.164 number and its text.

    ``key``, when given, is a business idempotency key (e.g. ``payment_reminder:C-0042:2026-01-07``): the
    message is sent at most once for that key whatever run or task sends it. Without it, at most once per
    (DAG run, task, map index, number).
    """

    to: str
    body: str
    key: str | None = None


def build_sms_messages(
    to: str | Iterable[str] | None = None,
    body: str | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> list[SmsMessage]:
    """Validate the "Send SMS" inputs: ``to`` and ``body`` (one text for every number), or ``messages``.

    :raises ValueError: listing every problem (numbers masked); nothing may be sent then.
    """
    problems: list[str] = []
    result: list[SmsMessage] = []
    if messages is not None:
        if to is not None or body is not None:
            raise ValueError("give either 'to' and 'body', or 'messages' (a list of {to, body}), not both")
        for index, item in enumerate(messages):
            if not isinstance(item, Mapping) or "to" not in item or "body" not in item:
                problems.append(f"messages[{index}] must be an object with 'to' and 'body' (and optionally 'key')")
                continue
            key = item.get("key")
            if key is not None and (not isinstance(key, str) or not key.strip()):
                problems.append(f"messages[{index}]: 'key' must be a non-empty string when given")
            result.append(SmsMessage(str(item["to"]).strip(), str(item["body"] or ""), key or None))
    else:
        numbers = as_list(to)
        if not numbers:
            problems.append("'to' is empty: give one E.164 number (+14155550100) or a list of them")
        unique = list(dict.fromkeys(numbers))
        result = [SmsMessage(number, body if isinstance(body, str) else "") for number in unique]
        if body is None or not str(body).strip():
            problems.append("the body is empty: give the text to send")
    bad = invalid_phone_numbers(m.to for m in result)
    if bad:
        problems.append(
            f"{len(bad)} number(s) not in E.164 form (+ and 8 to 15 digits, e.g. +14155550100): "
            + ", ".join(bad[:10]) + (" …" if len(bad) > 10 else "")
        )
    for index, message in enumerate(result):
        if messages is not None and not message.body.strip():
            problems.append(f"messages[{index}] ({mask_phone(message.to)}): the body is empty")
        if len(message.body) > MAX_SMS_BODY:
            problems.append(
                f"the body for {mask_phone(message.to)} has {len(message.body)} characters; Twilio accepts at most "
                f"{MAX_SMS_BODY}: shorten it"
            )
    seen: set[str] = set()
    for message in result:
        identity = message.key or message.to
        if identity in seen and messages is not None:
            what = f"key {message.key!r}" if message.key else mask_phone(message.to)
            problems.append(f"{what} appears more than once: one message per number (or key) per task")
        seen.add(identity)
    if problems:
        raise ValueError("Send SMS refused, nothing was sent:\n- " + "\n- ".join(dict.fromkeys(problems)))
    return result


@dataclass(frozen=True)
class EmailRequest:
    """One "Send Email" step: many recipients, one content (HTML, or a dynamic template)."""

    to: list[str]
    subject: str | None = None
    html_content: str | None = None
    template_id: str | None = None
    dynamic_template_data: Mapping[str, Any] | None = None


def build_email_request(
    to: str | Iterable[str] | None,
    subject: str | None = None,
    html_content: str | None = None,
    template_id: str | None = None,
    dynamic_template_data: Mapping[str, Any] | None = None,
) -> EmailRequest:
    """Validate the "Send Email" inputs.

    :raises ValueError: listing every problem (addresses masked); nothing may be sent then.
    """
    problems: list[str] = []
    recipients = list(dict.fromkeys(address.lower() for address in as_list(to)))
    if not recipients:
        problems.append("'to' is empty: give one e-mail address or a list of them")
    bad = invalid_email_addresses(recipients)
    if bad:
        shown = ", ".join(bad[:10]) + (" …" if len(bad) > 10 else "")
        problems.append(f"{len(bad)} invalid e-mail address(es): {shown}")
    if template_id:
        if html_content:
            problems.append("give either html_content or template_id, not both")
        if not str(template_id).startswith("d-"):
            problems.append(f"template_id {template_id!r} is not a dynamic template id (d-…)")
    else:
        if not html_content or not str(html_content).strip():
            problems.append("html_content is empty: give the HTML to send, or a template_id")
        if not subject or not str(subject).strip():
            problems.append("subject is empty")
        if dynamic_template_data:
            problems.append("dynamic_template_data needs a template_id")
    if dynamic_template_data is not None and not isinstance(dynamic_template_data, Mapping):
        problems.append("dynamic_template_data must be an object")
    if problems:
        raise ValueError("Send Email refused, nothing was sent:\n- " + "\n- ".join(problems))
    return EmailRequest(recipients, subject, html_content, template_id, dynamic_template_data)


def business_key(channel: str, key: str) -> str:
    """The ledger key of a message that carries its own business idempotency key."""
    import hashlib

    return f"{channel}:biz:{hashlib.sha256(key.encode()).hexdigest()}"


# -- mechanics --------------------------------------------------------------------------------------------


class VendorHook(Protocol):
    """What the delivery classes need of a hook besides its send calls."""

    def is_transient(self, error: BaseException) -> bool: ...
    def retry_after(self, error: BaseException) -> float | None: ...
    def describe_error(self, error: BaseException) -> tuple[str, str]: ...
    def is_fatal_for_batch(self, error: BaseException) -> bool: ...


class RateLimiter:
    """Paces calls to ``rate`` per second across threads (no bursts: one slot every 1/rate seconds)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


def call_with_retries(hook: VendorHook, policy: RetryPolicy, call: Callable[[], T],
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call``; retry it while the hook says the error is transient."""
    backoff = wait_exponential_jitter(initial=policy.initial, max=policy.maximum, jitter=policy.jitter)

    def wait(retry_state: Any) -> float:
        error = retry_state.outcome.exception()
        return min(max(backoff(retry_state), hook.retry_after(error) or 0.0), max(policy.maximum, 60.0))

    retrying = Retrying(stop=stop_after_attempt(policy.attempts), wait=wait, sleep=sleep, reraise=True,
                        retry=retry_if_exception(hook.is_transient))
    return retrying(call)


@dataclass
class DeliveryReport:
    """What one step did: the provider's id per message (in input order) and how each was reached."""

    message_ids: list[str]
    sent: int = 0
    already_accepted: int = 0
    reconciled: int = 0
    requests: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)


def still_to_send(keys: Sequence[str], entries: Mapping[str, LedgerEntry], report: DeliveryReport,
                  reconcile: Callable[[int, LedgerEntry], bool]) -> list[int]:
    """The indexes of the messages to send now: not accepted before, and not found at the provider when an
    interrupted attempt may have sent them (``reconcile`` records those it finds)."""
    todo: list[int] = []
    for index, key in enumerate(keys):
        entry = entries[key]
        if entry.status == DeliveryStatus.ACCEPTED.value:
            report.message_ids[index] = entry.provider_message_id or ""
            report.already_accepted += 1
        elif not (entry.may_have_been_sent and reconcile(index, entry)):
            todo.append(index)
    return todo


# -- SMS --------------------------------------------------------------------------------------------------


class SmsDelivery:
    """Sends SMS through a :class:`~demobank.connectors.twilio.TwilioHook`, exactly once per number and task."""

    channel = "sms"
    provider = "twilio"

    def __init__(self, hook: Any, ledger: DeliveryLedger, scope: DeliveryScope, *, rate_limit: float,
                 retry: RetryPolicy | None = None, max_in_flight: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.hook = hook
        self.ledger = ledger
        self.scope = scope
        self.limiter = RateLimiter(rate_limit, sleep=sleep)
        # Enough requests in flight to keep the rate while some threads wait out a Retry-After.
        max_in_flight = max_in_flight or min(64, max(16, int(rate_limit)))
        self.retry = retry or RetryPolicy()
        self.max_in_flight = max_in_flight
        self.sleep = sleep
        self._lock = threading.Lock()

    def send(self, messages: Sequence[SmsMessage]) -> DeliveryReport:
        """Send every message not accepted before; raise :class:`DeliveryFailed` if any is not delivered."""
        self.hook.sender_parameters()  # a connection without a sender fails before anything is claimed
        self.hook.get_conn()  # build the SDK client before the threads start, so their first slots are not bunched
        keys = [business_key(self.channel, m.key) if m.key else self.scope.key(self.channel, m.to) for m in messages]
        entries = self.ledger.claim(self.scope, self.channel, self.provider,
                                    [(k, mask_phone(m.to)) for k, m in zip(keys, messages, strict=True)])
        report = DeliveryReport(message_ids=[""] * len(messages))
        todo = still_to_send(keys, entries, report,
                             lambda index, entry: self._reconcile(messages[index], entry, report, index))
        log.info("Send SMS: %d message(s); %d accepted by an earlier attempt, %d reconciled, %d to send at ≤%g/s",
                 len(messages), report.already_accepted, report.reconciled, len(todo), 1 / self.limiter.interval)
        abort = threading.Event()

        def send_one(index: int) -> None:
            message, key = messages[index], keys[index]
            if abort.is_set():
                return
            try:
                def attempt() -> str:
                    self.limiter.acquire()
                    with self._lock:
                        report.requests += 1
                    return self.hook.send_sms(message.to, message.body)

                self.ledger.start_attempt([key])
                sid = call_with_retries(self.hook, self.retry, attempt, sleep=self.sleep)
            except Exception as error:  # noqa: BLE001 - every failure is recorded and reported below
                code, text = self.hook.describe_error(error)
                self.ledger.mark_failed([key], code, text)
                with self._lock:
                    report.failures.append((mask_phone(message.to), code, text))
                log.warning("SMS to %s not delivered: %s", mask_phone(message.to), text)
                if self.hook.is_fatal_for_batch(error):
                    abort.set()
                return
            self.ledger.mark_accepted([key], sid)
            with self._lock:
                report.message_ids[index] = sid
                report.sent += 1

        if todo:
            with ThreadPoolExecutor(max_workers=max(1, min(self.max_in_flight, len(todo)))) as pool:
                list(pool.map(send_one, todo))
        unsent = [i for i in todo if not report.message_ids[i]
                  and mask_phone(messages[i].to) not in {f[0] for f in report.failures}]
        for index in unsent:
            report.failures.append((mask_phone(messages[index].to), "not_sent",
                                    "not attempted: the batch stopped at an error that every message would hit"))
        log.info("Send SMS: %d sent in %d request(s), %d failed", report.sent, report.requests, len(report.failures))
        if report.failures:
            raise DeliveryFailed("SMS", report.failures, len(messages) - len(report.failures), len(messages))
        return report

    def _reconcile(self, message: SmsMessage, entry: LedgerEntry, report: DeliveryReport, index: int) -> bool:
        """Ask Twilio whether an earlier, interrupted attempt's message went out; record it if it did."""
        since = entry.created_at
        sid = call_with_retries(self.hook, self.retry, lambda: self.hook.find_sent_sms(message.to, message.body, since),
                                sleep=self.sleep)
        if sid is None:
            return False
        self.ledger.mark_accepted([entry.key], sid)
        report.message_ids[index] = sid
        report.reconciled += 1
        log.info("SMS to %s was accepted by an earlier, interrupted attempt (%s): not sent again",
                 mask_phone(message.to), sid)
        return True


# -- e-mail -----------------------------------------------------------------------------------------------


class EmailDelivery:
    """Sends e-mail through a :class:`~demobank.connectors.sendgrid.SendGridHook`, one personalization per
    recipient, up to ``batch_size`` per request, exactly once per recipient and task."""

    channel = "email"
    provider = "sendgrid"

    def __init__(self, hook: Any, ledger: DeliveryLedger, scope: DeliveryScope, *, batch_size: int = 1000,
                 retry: RetryPolicy | None = None, max_in_flight: int = 4,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError(f"batch_size must be between 1 and 1000 (SendGrid's limit), got {batch_size}")
        self.hook = hook
        self.ledger = ledger
        self.scope = scope
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self.max_in_flight = max_in_flight
        self.sleep = sleep
        self._lock = threading.Lock()

    def payload(self, request: EmailRequest, recipients: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """The v3 mail send body for ``(address, idempotency key)`` pairs."""
        if not self.hook.from_email:
            from demobank.exceptions import ConfigurationError

            raise ConfigurationError(
                f"connection {self.hook.sendgrid_conn_id!r} has no sender: set the extra 'from_email' "
                "(a verified sender)"
            )
        sender: dict[str, str] = {"email": self.hook.from_email}
        if self.hook.from_name:
            sender["name"] = self.hook.from_name
        personalizations = []
        for address, key in recipients:
            item: dict[str, Any] = {"to": [{"email": address}], "custom_args": {DELIVERY_KEY_ARG: key}}
            if request.dynamic_template_data:
                item["dynamic_template_data"] = dict(request.dynamic_template_data)
            personalizations.append(item)
        body: dict[str, Any] = {"personalizations": personalizations, "from": sender}
        if request.subject:
            body["subject"] = request.subject
        if request.template_id:
            body["template_id"] = request.template_id
        else:
            body["content"] = [{"type": "text/html", "value": request.html_content}]
        if self.hook.sandbox_mode:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return body

    def send(self, request: EmailRequest) -> DeliveryReport:
        """Send to every recipient not accepted before; raise :class:`DeliveryFailed` if any is not delivered."""
        recipients = request.to
        keys = [self.scope.key(self.channel, address) for address in recipients]
        self.payload(request, [])  # a connection without a sender fails before anything is claimed
        entries = self.ledger.claim(self.scope, self.channel, self.provider,
                                    [(k, mask_email(a)) for k, a in zip(keys, recipients, strict=True)])
        report = DeliveryReport(message_ids=[""] * len(recipients))
        todo = still_to_send(keys, entries, report,
                             lambda index, entry: self._reconcile(entry, report, index, recipients[index]))
        batches = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        log.info("Send Email: %d recipient(s); %d accepted by an earlier attempt, %d reconciled, %d to send in %d "
                 "request(s)", len(recipients), report.already_accepted, report.reconciled, len(todo), len(batches))
        abort = threading.Event()

        def send_batch(batch: list[int]) -> None:
            if abort.is_set():
                return
            batch_keys = [keys[i] for i in batch]
            body = self.payload(request, [(recipients[i], keys[i]) for i in batch])
            try:
                def attempt() -> str | None:
                    with self._lock:
                        report.requests += 1
                    return self.hook.send_mail(body)

                self.ledger.start_attempt(batch_keys)
                message_id = call_with_retries(self.hook, self.retry, attempt, sleep=self.sleep)
            except Exception as error:  # noqa: BLE001 - every failure is recorded and reported below
                code, text = self.hook.describe_error(error)
                self.ledger.mark_failed(batch_keys, code, text)
                with self._lock:
                    report.failures.extend((mask_email(recipients[i]), code, text) for i in batch)
                log.warning("E-mail request for %d recipient(s) not delivered: %s", len(batch), text)
                if self.hook.is_fatal_for_batch(error):
                    abort.set()
                return
            message_id = message_id or "accepted"
            self.ledger.mark_accepted(batch_keys, message_id)
            with self._lock:
                for i in batch:
                    report.message_ids[i] = message_id
                report.sent += len(batch)

        if batches:
            with ThreadPoolExecutor(max_workers=max(1, min(self.max_in_flight, len(batches)))) as pool:
                list(pool.map(send_batch, batches))
        failed = {f[0] for f in report.failures}
        for index in todo:
            if not report.message_ids[index] and mask_email(recipients[index]) not in failed:
                report.failures.append((mask_email(recipients[index]), "not_sent",
                                        "not attempted: the step stopped at an error that every request would hit"))
        log.info("Send Email: %d recipient(s) accepted in %d request(s), %d failed", report.sent, report.requests,
                 len(report.failures))
        if report.failures:
            raise DeliveryFailed("e-mail", report.failures, len(recipients) - len(report.failures), len(recipients))
        return report

    def _reconcile(self, entry: LedgerEntry, report: DeliveryReport, index: int, address: str) -> bool:
        """Ask SendGrid's Email Activity whether an interrupted attempt's message was accepted."""
        message_id = call_with_retries(self.hook, self.retry,
                                       lambda: self.hook.find_accepted(DELIVERY_KEY_ARG, entry.key), sleep=self.sleep)
        if message_id is None:
            return False
        self.ledger.mark_accepted([entry.key], message_id)
        report.message_ids[index] = message_id
        report.reconciled += 1
        log.info("E-mail to %s was accepted by an earlier, interrupted attempt: not sent again", mask(address))
        return True
