"""Sending SMS and e-mail exactly once: validation, the delivery ledger, retries, rate limits and batching.

Airflow-free: the operators in :mod:`demobank.connect.operators` are thin wrappers around
:class:`SmsDelivery` and :class:`EmailDelivery`, which take a hook, a ledger and the task instance's scope.

* Everything is validated before the first message goes out: a bad input sends nothing.
* The task's try claims its messages in the ledger (an owner and a lease, renewed while it sends) and sends only
  those it holds: messages held by another live task are not sent by this one (it waits for that task's outcome,
  up to ``wait_for_others`` seconds, then fails naming them). Accepted messages are skipped.
* Every failed send is classified by the hook (:class:`~demobank.retry.SendOutcome`). ``not_sent`` (the request
  never reached the provider) and a 429 are retried directly, with exponential backoff and jitter, waiting at
  least the provider's ``Retry-After``. Other refusals fail at once with the provider's code and a hint (bad
  credentials stop the whole batch). ``unknown`` (a read timeout, a reset, a 5xx: the provider may have accepted
  it) is recorded as such and looked up at the provider before anything is resent: found, it is accepted with the
  provider's id; absent, it is sent again. A lookup proves a message absent only ``reconcile_after_seconds`` (a
  connection extra) after its request started; earlier than that, and when the delay is longer than
  ``max_reconcile_wait``, it stays ``unknown``, is not resent, and the task fails naming it, so that a retry
  looks it up again. The same lookup serves rows that an earlier try left ``unknown`` or ``pending`` after its
  request started (it died before recording the answer).
* SMS are paced to the sender's rate (messages per second) with several requests in flight; e-mails go in
  requests of up to 1000 personalizations (one per recipient), each carrying its request id as a custom arg, so
  that one Email Activity search settles a whole request (SendGrid accepts a request whole or not at all).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from demobank.connect.ledger import DEFAULT_LEASE_SECONDS, Claim, DeliveryLedger, DeliveryScope, LedgerEntry
from demobank.connect.recipients import (
    MAX_SMS_BODY,
    as_list,
    invalid_email_addresses,
    invalid_phone_numbers,
    mask_email,
    mask_phone,
)
from demobank.db.models import DeliveryStatus, utcnow
from demobank.exceptions import DemoBankError
from demobank.retry import RetryPolicy, SendOutcome

log = logging.getLogger(__name__)

T = TypeVar("T")

DELIVERY_KEY_ARG = "demobank_delivery"
"""SendGrid ``custom_args`` key carrying a recipient's idempotency key (found again by the Email Activity API)."""
ATTEMPT_ARG = "demobank_attempt"
"""SendGrid request-level ``custom_args`` key carrying the id of the send request (one Email Activity search finds
the whole request)."""
UNKNOWN_CODE = "unknown"
"""The failure code of a message whose outcome is unknown and could not be settled yet (it was not resent)."""


class DeliveryFailed(DemoBankError):
    """Some messages were refused or could not be delivered; ``failures`` says which (masked) and why, ``unknown``
    which of them may have been accepted (a retry looks them up), ``report`` what the step did."""

    def __init__(self, channel: str, failures: Sequence[tuple[str, str, str]], accepted: int, total: int,
                 report: DeliveryReport | None = None) -> None:
        self.failures = list(failures)
        self.report = report
        self.unknown = [recipient for recipient, code, _ in self.failures if code == UNKNOWN_CODE]
        lines = [f"  {recipient}: {message}" for recipient, _code, message in self.failures[:20]]
        more = f"\n  … and {len(self.failures) - 20} more" if len(self.failures) > 20 else ""
        unknown = ""
        if self.unknown:
            shown = ", ".join(self.unknown[:20]) + (" …" if len(self.unknown) > 20 else "")
            unknown = (f"; {len(self.unknown)} of them may have been accepted and are to be reconciled with the "
                       f"provider by a retry, not resent blindly: {shown}")
        super().__init__(
            f"{len(self.failures)} of {total} {channel} message(s) not delivered ({accepted} accepted; a retry of "
            f"this task sends only the ones not accepted{unknown}):\n" + "\n".join(lines) + more
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

_CLOCK_SKEW = timedelta(seconds=60)
"""How much earlier than our claim the provider's clock may date our message (Twilio's message list lookup)."""
DEFAULT_MAX_RECONCILE_WAIT = 60.0
"""Seconds a send may wait for a lookup to become conclusive (``reconcile_after_seconds``) inside one attempt."""
DEFAULT_WAIT_FOR_OTHERS = DEFAULT_LEASE_SECONDS + 30.0
"""Seconds a send waits for messages that another task holds: longer than a lease, so that the lease of a task that
died expires meanwhile."""


class VendorHook(Protocol):
    """What the delivery classes need of a hook besides its send and lookup calls."""

    @property
    def reconcile_after_seconds(self) -> float: ...
    def classify_failure(self, error: BaseException) -> SendOutcome: ...
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
    """Run ``call``, a lookup (safe to repeat); retry it while the hook says the error is transient."""
    number = 1
    while True:
        try:
            return call()
        except Exception as error:
            if number >= policy.attempts or not hook.is_transient(error):
                raise
            sleep(policy.delay(number, hook.retry_after(error)))
            number += 1


class Lookup(StrEnum):
    """What asking the provider about a request of unknown outcome settled."""

    FOUND = "found"
    """The provider has it: accepted."""
    ABSENT = "absent"
    """The provider does not have it, and would by now: provably not accepted, send it again."""
    UNSETTLED = "unsettled"
    """Not found, but that proves nothing yet (too early, or the lookup failed): keep it unknown, do not resend."""


@dataclass(frozen=True)
class Resolution:
    """The answer of one lookup."""

    lookup: Lookup
    message_id: str | None = None
    reason: str = ""


@dataclass
class DeliveryReport:
    """What one step did: the provider's id per message (in input order) and how each was reached."""

    message_ids: list[str]
    sent: int = 0
    already_accepted: int = 0
    reconciled: int = 0
    """Found at the provider after an unknown outcome (this attempt's or an earlier one's): not sent again."""
    requests: int = 0
    """Send requests made (lookups not counted)."""
    lookups: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    not_marked: list[str] = field(default_factory=list)
    """Keys whose outcome this task could not record: another task holds them now (this task's lease expired)."""


@dataclass(frozen=True)
class _Unit:
    """Messages that went, or go, in one send request: one SMS, or one e-mail request."""

    indexes: tuple[int, ...]
    attempt_id: str | None = None
    """The request to look up (None: look each message up by its key)."""
    attempted_at: datetime | None = None
    """When that request started."""


@dataclass
class _Run:
    """The state of one :meth:`_Delivery._run`."""

    keys: list[str]
    masked: list[str]
    data: Any
    report: DeliveryReport
    index_of: dict[str, int]
    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    settled: set[int] = field(default_factory=set)
    """Indexes with an outcome in this run (accepted, or a failure recorded)."""
    abort: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _LeaseKeeper:
    """Renews the owner's leases every third of a lease while a send runs."""

    def __init__(self, ledger: DeliveryLedger, owner: str) -> None:
        self.ledger = ledger
        self.owner = owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="delivery-lease", daemon=True)

    def _renew(self) -> None:
        while not self._stop.wait(self.ledger.lease_seconds / 3):
            try:
                self.ledger.renew(self.owner)
            except Exception as error:  # noqa: BLE001 - a failed renewal is retried; start_attempt guards sends
                log.warning("Could not renew the delivery lease of %s: %s", self.owner, error)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Delivery:
    """Claims, sends, classifies, reconciles and records: what SMS and e-mail share.

    :param hook: the vendor hook.
    :param ledger: the delivery ledger.
    :param scope: the task instance (its keys).
    :param retry: attempts and backoff of one message (or request) inside this attempt of the task.
    :param owner: the claim owner (default: a new one for this scope, see :meth:`DeliveryScope.owner`).
    :param max_in_flight: requests at once.
    :param sleep: how to wait (tests pass a recorder).
    :param max_reconcile_wait: the longest this attempt waits for a lookup to become conclusive.
    :param wait_for_others: the longest this attempt waits for messages another task holds.
    :param poll_interval: seconds between two looks at those messages.
    """

    channel = ""
    provider = ""
    provider_name = ""

    def __init__(self, hook: Any, ledger: DeliveryLedger, scope: DeliveryScope, *, retry: RetryPolicy | None,
                 owner: str | None, max_in_flight: int, sleep: Callable[[float], None], max_reconcile_wait: float,
                 wait_for_others: float, poll_interval: float) -> None:
        self.hook = hook
        self.ledger = ledger
        self.scope = scope
        self.retry = retry or RetryPolicy()
        self.owner = owner or scope.owner()
        self.max_in_flight = max_in_flight
        self.sleep = sleep
        self.max_reconcile_wait = max_reconcile_wait
        self.wait_for_others = wait_for_others
        self.poll_interval = poll_interval

    # -- what each channel provides ----------------------------------------------------------------------

    def _send(self, run: _Run, indexes: Sequence[int], attempt_id: str) -> str:
        """Make one send request (no retry); return the provider's id."""
        raise NotImplementedError

    def _look_up(self, run: _Run, unit: _Unit) -> str | None:
        """The provider's id if it has the message(s) of ``unit``, else None (one lookup, no retry)."""
        raise NotImplementedError

    def _lookup_units(self, run: _Run, indexes: Sequence[int]) -> list[_Unit]:
        """The requests to look up for messages an earlier attempt may have sent: one per message by default."""
        return [_Unit((i,), run.entries[run.keys[i]].attempt_id, _attempted_at(run.entries[run.keys[i]]))
                for i in indexes]

    def _batches(self, indexes: Sequence[int]) -> list[list[int]]:
        """How messages go into send requests: one per message by default."""
        return [[i] for i in indexes]

    # -- the run -----------------------------------------------------------------------------------------

    def _run(self, keys: list[str], masked: list[str], data: Any) -> DeliveryReport:
        run = _Run(keys, masked, data, DeliveryReport([""] * len(keys)), {k: i for i, k in enumerate(keys)})
        recipients = list(zip(keys, masked, strict=True))
        try:
            with _LeaseKeeper(self.ledger, self.owner):
                claim = self.ledger.claim(self.scope, self.channel, self.provider, recipients, self.owner)
                self._serve(run, claim)
                deadline = time.monotonic() + self.wait_for_others
                if claim.contested:
                    log.info("%d message(s) are held by another task (%s): waiting up to %gs for its outcome",
                             len(claim.contested), next(iter(claim.contested.values())).claimed_by,
                             self.wait_for_others)
                while claim.contested and not run.abort.is_set() and time.monotonic() < deadline:
                    run.abort.wait(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
                    claim = self._poll(run, claim, recipients)
        finally:
            self.ledger.release(self.owner)
        for key, entry in claim.contested.items():
            until = f"{entry.lease_until:%Y-%m-%d %H:%M:%S} UTC" if entry.lease_until else "?"
            self._fail(run, [run.index_of[key]], "held_by_other_task",
                       f"another task ({entry.claimed_by}, lease until {until}) holds this message and records its "
                       "outcome: not sent by this task; a retry sends it only if that task did not get it accepted")
        for index in range(len(keys)):
            if index not in run.settled:
                self._fail(run, [index], "not_sent",
                           "not attempted: the batch stopped at an error that every message would hit")
        return run.report

    def _poll(self, run: _Run, claim: Claim, recipients: Sequence[tuple[str, str]]) -> Claim:
        """Look (a read) at the messages another task holds; claim and serve those it let go or accepted."""
        now = utcnow()
        current = self.ledger.entries(list(claim.contested))
        accepted = {k: e for k, e in current.items() if e.status == DeliveryStatus.ACCEPTED.value}
        free = {k for k, e in current.items()
                if k not in accepted and (e.lease_until is None or e.lease_until < now or e.claimed_by == self.owner)}
        still = {k: e for k, e in current.items() if k not in accepted and k not in free}
        result = Claim(self.owner, accepted=accepted)
        if free:
            taken = self.ledger.claim(self.scope, self.channel, self.provider,
                                      [(k, m) for k, m in recipients if k in free], self.owner)
            result.held, result.accepted = taken.held, {**accepted, **taken.accepted}
            still.update(taken.contested)
        result.contested = still
        self._serve(run, result)
        return result

    def _serve(self, run: _Run, claim: Claim) -> None:
        """Settle what one claim got: skip the accepted, look up what may have been sent, send the rest."""
        run.entries.update(claim.accepted)
        run.entries.update(claim.held)
        for key, entry in claim.accepted.items():
            index = run.index_of[key]
            run.report.message_ids[index] = entry.provider_message_id or ""
            run.report.already_accepted += 1
            run.settled.add(index)
        to_look_up = sorted(run.index_of[k] for k, e in claim.held.items() if e.may_have_been_sent)
        fresh = [run.index_of[k] for k, e in claim.held.items() if not e.may_have_been_sent]
        absent = self._parallel(self._lookup_units(run, to_look_up), lambda unit: self._reconcile_earlier(run, unit))
        todo = sorted(fresh + [index for indexes in absent for index in indexes])
        if claim.held:
            log.info("Send %s: %d message(s) claimed, %d accepted before; %d of an earlier attempt to look up, %d to "
                     "send", self.channel, len(claim.held), len(claim.accepted), len(to_look_up), len(todo))
        self._parallel(self._batches(todo), lambda batch: self._deliver(run, batch))

    def _parallel(self, items: Sequence[Any], work: Callable[[Any], T]) -> list[T]:
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_in_flight, len(items)))) as pool:
            return list(pool.map(work, items))

    def _reconcile_earlier(self, run: _Run, unit: _Unit) -> list[int]:
        """Look up messages an earlier attempt may have sent; return those to send again (provably absent)."""
        if run.abort.is_set():
            return []
        resolution = self._reconcile(run, unit)
        if resolution.lookup is Lookup.FOUND:
            self._accepted(run, unit.indexes, resolution.message_id or "", reconciled=True)
            return []
        if resolution.lookup is Lookup.UNSETTLED:
            self._fail(run, unit.indexes, UNKNOWN_CODE,
                       f"an earlier attempt's outcome is unknown and {resolution.reason}")
            return []
        return list(unit.indexes)

    def _reconcile(self, run: _Run, unit: _Unit) -> Resolution:
        """Ask the provider whether it has the message(s) of ``unit``; absence counts once the lookup is conclusive
        (``reconcile_after_seconds`` after the request started), for which this waits up to
        ``max_reconcile_wait``."""
        settle = self.hook.reconcile_after_seconds
        conclusive_at = (unit.attempted_at or utcnow()) + timedelta(seconds=settle)
        wait = (conclusive_at - utcnow()).total_seconds()
        if 0 < wait <= self.max_reconcile_wait:
            self.sleep(wait)
            wait = 0.0
        with run.lock:
            run.report.lookups += 1
        try:
            found = call_with_retries(self.hook, self.retry, lambda: self._look_up(run, unit), sleep=self.sleep)
        except Exception as error:  # noqa: BLE001 - a failed lookup settles nothing; the message stays unknown
            _code, text = self.hook.describe_error(error)
            return Resolution(Lookup.UNSETTLED, reason=f"the lookup at {self.provider_name} failed ({text}): not "
                                                       "sent again; a retry of this task looks it up again")
        if found:
            return Resolution(Lookup.FOUND, found)
        if wait > 0:
            return Resolution(Lookup.UNSETTLED, reason=(
                f"{self.provider_name} does not show it yet, which proves nothing before "
                f"{conclusive_at:%Y-%m-%d %H:%M:%S} UTC ({settle:g}s after the request, the connection's "
                "reconcile_after_seconds): not sent again; a retry of this task after that time looks it up again"))
        return Resolution(Lookup.ABSENT)

    def _deliver(self, run: _Run, indexes: list[int]) -> None:
        """Send one request, retrying what provably did not arrive and reconciling what may have."""
        failure = ("not_sent", "not attempted")
        retry_after: float | None = None
        for number in range(1, self.retry.attempts + 1):
            if run.abort.is_set():
                return
            if number > 1:
                self.sleep(self.retry.delay(number - 1, retry_after))
            attempt_id = uuid.uuid4().hex
            lost = set(self.ledger.start_attempt([run.keys[i] for i in indexes], self.owner, attempt_id))
            if lost:
                self._lost(run, [i for i in indexes if run.keys[i] in lost])
                indexes = [i for i in indexes if run.keys[i] not in lost]
                if not indexes:
                    return
            started = utcnow()
            try:
                message_id = self._send(run, indexes, attempt_id)
            except Exception as error:  # noqa: BLE001 - every failure is classified, recorded and reported
                outcome = self.hook.classify_failure(error)
                failure = self.hook.describe_error(error)
                retry_after = self.hook.retry_after(error)
                if self.hook.is_fatal_for_batch(error):
                    self._failed(run, indexes, *failure)
                    run.abort.set()
                    return
                throttled = outcome is SendOutcome.REFUSED and self.hook.is_transient(error)
                if outcome is SendOutcome.NOT_SENT or throttled:
                    log.info("%s request for %d message(s) %s (%s): sending it again", self.provider_name,
                             len(indexes), "throttled" if throttled else "never arrived",
                             failure[1])
                    continue
                if outcome is SendOutcome.REFUSED:
                    self._failed(run, indexes, *failure)
                    return
                indexes = self._settle_unknown(run, indexes, attempt_id, started, failure)
                if not indexes:
                    return
                retry_after = None
                continue
            self._accepted(run, indexes, message_id, reconciled=False)
            return
        self._failed(run, indexes, *failure)  # every request of this message provably not accepted

    def _settle_unknown(self, run: _Run, indexes: list[int], attempt_id: str, started: datetime,
                        failure: tuple[str, str]) -> list[int]:
        """Record an unknown outcome and look it up; return the messages to send again (provably not accepted)."""
        code, text = failure
        log.warning("%s request for %d message(s): outcome unknown (%s); looking it up before any resend",
                    self.provider_name, len(indexes), text)
        lost = set(self.ledger.mark_unknown([run.keys[i] for i in indexes], self.owner, code, text))
        if lost:
            self._lost(run, [i for i in indexes if run.keys[i] in lost])
            indexes = [i for i in indexes if run.keys[i] not in lost]
        if not indexes:
            return []
        resolution = self._reconcile(run, _Unit(tuple(indexes), attempt_id, started))
        if resolution.lookup is Lookup.FOUND:
            self._accepted(run, indexes, resolution.message_id or "", reconciled=True)
            return []
        if resolution.lookup is Lookup.UNSETTLED:
            self._fail(run, indexes, UNKNOWN_CODE, f"outcome unknown ({text}); {resolution.reason}")
            return []
        log.info("%s does not have the request of unknown outcome (%d message(s)): sending it again",
                 self.provider_name, len(indexes))
        return indexes

    # -- recording outcomes ------------------------------------------------------------------------------

    def _accepted(self, run: _Run, indexes: Sequence[int], message_id: str, *, reconciled: bool) -> None:
        missed = set(self.ledger.mark_accepted([run.keys[i] for i in indexes], self.owner, message_id))
        with run.lock:
            for index in indexes:
                run.report.message_ids[index] = message_id
                run.settled.add(index)
            recorded = len(indexes) - len(missed)
            if reconciled:
                run.report.reconciled += recorded
            else:
                run.report.sent += recorded
        if reconciled and recorded:
            log.info("%d %s message(s) (%s) were accepted by %s after all (%s): not sent again", recorded,
                     self.channel, ", ".join(run.masked[i] for i in indexes[:5]), self.provider_name, message_id)
        if missed:
            self._lost(run, [i for i in indexes if run.keys[i] in missed],
                       f"accepted by {self.provider_name} ({message_id}), but ")

    def _failed(self, run: _Run, indexes: Sequence[int], code: str, text: str) -> None:
        """Provably not accepted: record ``failed`` and report it."""
        missed = set(self.ledger.mark_failed([run.keys[i] for i in indexes], self.owner, code, text))
        self._fail(run, [i for i in indexes if run.keys[i] not in missed], code, text)
        if missed:
            self._lost(run, [i for i in indexes if run.keys[i] in missed])

    def _lost(self, run: _Run, indexes: Sequence[int], prefix: str = "") -> None:
        with run.lock:
            run.report.not_marked.extend(run.keys[i] for i in indexes)
        self._fail(run, indexes, "lease_lost",
                   f"{prefix}another task took this message over (this task's lease had expired): that task records "
                   "its outcome; a retry of this task finds it there")

    def _fail(self, run: _Run, indexes: Sequence[int], code: str, text: str) -> None:
        with run.lock:
            for index in indexes:
                run.report.failures.append((run.masked[index], code, text))
                run.settled.add(index)
        if indexes:
            shown = ", ".join(run.masked[i] for i in indexes[:3]) + (" …" if len(indexes) > 3 else "")
            log.warning("%s to %s not delivered: %s", self.channel, shown, text)


def _attempted_at(entry: LedgerEntry) -> datetime | None:
    return entry.attempted_at or entry.created_at


# -- SMS --------------------------------------------------------------------------------------------------


class SmsDelivery(_Delivery):
    """Sends SMS through a :class:`~demobank.connectors.twilio.TwilioHook`, exactly once per number and task."""

    channel = "sms"
    provider = "twilio"
    provider_name = "Twilio"

    def __init__(self, hook: Any, ledger: DeliveryLedger, scope: DeliveryScope, *, rate_limit: float,
                 retry: RetryPolicy | None = None, max_in_flight: int | None = None,
                 sleep: Callable[[float], None] = time.sleep, owner: str | None = None,
                 max_reconcile_wait: float = DEFAULT_MAX_RECONCILE_WAIT,
                 wait_for_others: float = DEFAULT_WAIT_FOR_OTHERS, poll_interval: float = 1.0) -> None:
        # Enough requests in flight to keep the rate while some threads wait out a Retry-After.
        super().__init__(hook, ledger, scope, retry=retry, owner=owner,
                         max_in_flight=max_in_flight or min(64, max(16, int(rate_limit))), sleep=sleep,
                         max_reconcile_wait=max_reconcile_wait, wait_for_others=wait_for_others,
                         poll_interval=poll_interval)
        self.limiter = RateLimiter(rate_limit, sleep=sleep)

    def send(self, messages: Sequence[SmsMessage]) -> DeliveryReport:
        """Send every message not accepted before; raise :class:`DeliveryFailed` if any is not delivered."""
        self.hook.sender_parameters()  # a connection without a sender fails before anything is claimed
        self.hook.get_conn()  # build the SDK client before the threads start, so their first slots are not bunched
        keys = [business_key(self.channel, m.key) if m.key else self.scope.key(self.channel, m.to) for m in messages]
        report = self._run(keys, [mask_phone(m.to) for m in messages], list(messages))
        log.info("Send SMS: %d sent in %d request(s), %d reconciled, %d failed", report.sent, report.requests,
                 report.reconciled, len(report.failures))
        if report.failures:
            raise DeliveryFailed("SMS", report.failures, len(messages) - len(report.failures), len(messages), report)
        return report

    def _send(self, run: _Run, indexes: Sequence[int], attempt_id: str) -> str:
        (index,) = indexes
        message: SmsMessage = run.data[index]
        self.limiter.acquire()
        with run.lock:
            run.report.requests += 1
        return self.hook.send_sms(message.to, message.body)

    def _look_up(self, run: _Run, unit: _Unit) -> str | None:
        """Twilio's message list: a message with this body to this number since the row was claimed."""
        (index,) = unit.indexes
        message: SmsMessage = run.data[index]
        since = (run.entries[run.keys[index]].created_at or utcnow()) - _CLOCK_SKEW
        return self.hook.find_sent_sms(message.to, message.body, since)


# -- e-mail -----------------------------------------------------------------------------------------------


class EmailDelivery(_Delivery):
    """Sends e-mail through a :class:`~demobank.connectors.sendgrid.SendGridHook`, one personalization per
    recipient, up to ``batch_size`` per request, exactly once per recipient and task."""

    channel = "email"
    provider = "sendgrid"
    provider_name = "SendGrid"

    def __init__(self, hook: Any, ledger: DeliveryLedger, scope: DeliveryScope, *, batch_size: int = 1000,
                 retry: RetryPolicy | None = None, max_in_flight: int = 4,
                 sleep: Callable[[float], None] = time.sleep, owner: str | None = None,
                 max_reconcile_wait: float = DEFAULT_MAX_RECONCILE_WAIT,
                 wait_for_others: float = DEFAULT_WAIT_FOR_OTHERS, poll_interval: float = 1.0) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError(f"batch_size must be between 1 and 1000 (SendGrid's limit), got {batch_size}")
        super().__init__(hook, ledger, scope, retry=retry, owner=owner, max_in_flight=max_in_flight, sleep=sleep,
                         max_reconcile_wait=max_reconcile_wait, wait_for_others=wait_for_others,
                         poll_interval=poll_interval)
        self.batch_size = batch_size

    def payload(self, request: EmailRequest, recipients: Sequence[tuple[str, str]],
                attempt_id: str | None = None) -> dict[str, Any]:
        """The v3 mail send body for ``(address, idempotency key)`` pairs; ``attempt_id`` names the request."""
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
        if attempt_id:
            body["custom_args"] = {ATTEMPT_ARG: attempt_id}
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
        report = self._run(keys, [mask_email(a) for a in recipients], request)
        log.info("Send Email: %d recipient(s) accepted in %d request(s), %d reconciled, %d failed", report.sent,
                 report.requests, report.reconciled, len(report.failures))
        if report.failures:
            raise DeliveryFailed("e-mail", report.failures, len(recipients) - len(report.failures), len(recipients),
                                 report)
        return report

    def _batches(self, indexes: Sequence[int]) -> list[list[int]]:
        return [list(indexes[i:i + self.batch_size]) for i in range(0, len(indexes), self.batch_size)]

    def _lookup_units(self, run: _Run, indexes: Sequence[int]) -> list[_Unit]:
        """One lookup per earlier request (its recipients share its fate); by key for rows without one."""
        by_request: dict[str, list[int]] = {}
        units: list[_Unit] = []
        for index in indexes:
            entry = run.entries[run.keys[index]]
            if entry.attempt_id:
                by_request.setdefault(entry.attempt_id, []).append(index)
            else:
                units.append(_Unit((index,), None, _attempted_at(entry)))
        for attempt_id, members in by_request.items():
            started = max((_attempted_at(run.entries[run.keys[i]]) for i in members), default=None, key=_sortable)
            units.append(_Unit(tuple(members), attempt_id, started))
        return units

    def _send(self, run: _Run, indexes: Sequence[int], attempt_id: str) -> str:
        request: EmailRequest = run.data
        body = self.payload(request, [(request.to[i], run.keys[i]) for i in indexes], attempt_id)
        with run.lock:
            run.report.requests += 1
        return self.hook.send_mail(body) or "accepted"

    def _look_up(self, run: _Run, unit: _Unit) -> str | None:
        """SendGrid's Email Activity: the request by its ``demobank_attempt`` custom arg (accepted whole or not at
        all), or one recipient by its ``demobank_delivery`` key."""
        if unit.attempt_id:
            found = self.hook.find_accepted(ATTEMPT_ARG, unit.attempt_id)
            return found.split(".", 1)[0] if found else None  # msg_id = <X-Message-Id>.filter…
        (index,) = unit.indexes
        return self.hook.find_accepted(DELIVERY_KEY_ARG, run.keys[index])


def _sortable(moment: datetime | None) -> datetime:
    return moment or datetime.min.replace(tzinfo=utcnow().tzinfo)
