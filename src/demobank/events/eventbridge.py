"""Publishing CloudEvents envelopes to an Amazon EventBridge custom bus: batched, and resending only what failed.

Airflow-free apart from the client: :class:`EventBridgePublisher` takes either a boto3 ``events`` client or the
amazon provider's ``EventBridgeHook`` (whose ``.conn`` is that client), so the dispatcher reuses the AWS connection.

Why not the provider's ``EventBridgePutEventsOperator``: it sends every entry in one ``PutEvents`` call (EventBridge
accepts at most 10) and raises on a partial failure after the good entries were published, so a task retry
publishes them again. Here:

* Envelopes become ``PutEvents`` entries (:func:`entry_for`) packed in order into requests of at most 10 entries
  whose total size, computed the way EventBridge computes it (:func:`entry_size`), stays within ``max_bytes``
  (:func:`plan_batches`). An entry larger than ``max_bytes`` on its own is not sent: it fails permanently.
* A partial failure resends only the failed entries whose error is transient (throttling, internal errors), with
  exponential backoff and jitter, up to ``RetryPolicy.attempts`` sends per entry. Permanent per-entry errors
  (``MalformedDetail``, ``ValidationException``, ``AccessDeniedException`` …) are reported, never retried.
* A whole-call throttling / 5xx / connection error resends the whole batch. A whole-call error about the target
  itself (credentials, access, the bus does not exist) fails every entry permanently, with a message naming the bus
  and the connection, and sends nothing more. A whole-call validation error of a batch of several entries sends
  its entries one by one, so that one bad entry does not fail the others.
* :meth:`EventBridgePublisher.publish` never raises for an event's outcome: it returns a :class:`PublishResult`
  (envelope id → :class:`Delivered` or :class:`Failed`); the dispatcher decides what to retry or dead-letter.
  It raises only for programming errors (an envelope without an id, the same id twice, an unexpected exception).

Delivery is at least once: EventBridge has no idempotency key, so an entry whose answer was lost (a read timeout,
a 5xx after ingestion) may be published twice; consumers de-duplicate on the envelope ``id`` (the CloudEvents id,
also in ``detail.id``). Logs carry counts and error codes, never payloads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, ParamValidationError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from demobank.retry import RetryPolicy

log = logging.getLogger(__name__)

EVENT_SOURCE = "com.demobank"
"""The ``Source`` of every entry (rules on the bus match on it)."""

MAX_ENTRIES_PER_REQUEST = 10
"""EventBridge's limit on entries per ``PutEvents`` request."""

DEFAULT_MAX_BYTES = 256 * 1024
"""EventBridge's limit on the total entry size of one ``PutEvents`` request (256 KB)."""

DEFAULT_MAX_IN_FLIGHT = 4
"""PutEvents requests one publish sends at once (EventBridge's PutEvents quota is thousands per second)."""

TIME_SIZE = 14
"""Bytes EventBridge counts for an entry's ``Time``, whatever its value."""

TRANSIENT_ERROR_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "InternalException", "InternalFailure", "InternalError",
    "InternalServerError", "InternalServiceError", "ServiceUnavailable", "ServiceUnavailableException",
    "RequestTimeout", "RequestTimeoutException",
})
"""Error codes (per entry or for the whole call) worth sending again after a pause."""

CREDENTIAL_ERROR_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException", "SignatureDoesNotMatch",
    "IncompleteSignature", "MissingAuthenticationToken", "ExpiredToken", "ExpiredTokenException", "AuthFailure",
})
ACCESS_ERROR_CODES = frozenset({"AccessDeniedException", "AccessDenied", "NotAuthorizedForSourceException"})
BUS_NOT_FOUND_CODES = frozenset({"ResourceNotFoundException"})
TARGET_ERROR_CODES = CREDENTIAL_ERROR_CODES | ACCESS_ERROR_CODES | BUS_NOT_FOUND_CODES
"""Errors about the target (connection, permissions, bus) rather than the event: every other event would hit them."""


# -- entries ----------------------------------------------------------------------------------------------


def _parse_time(value: Any, envelope_id: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"envelope {envelope_id!r}: time {value!r} is not an RFC 3339 timestamp "
                "(e.g. 2026-01-07T10:00:00Z)"
            ) from None
    else:
        raise ValueError(f"envelope {envelope_id!r} has no 'time': every CloudEvents envelope needs one")
    if parsed.tzinfo is None:
        raise ValueError(f"envelope {envelope_id!r}: time {value!r} has no UTC offset: write it with Z or +HH:MM")
    return parsed


def entry_for(envelope: Mapping[str, Any], bus_name: str) -> dict[str, Any]:
    """The ``PutEvents`` entry of one CloudEvents envelope.

    ``Source`` is :data:`EVENT_SOURCE`, ``DetailType`` the envelope's ``type``, ``Detail`` the whole envelope as
    compact JSON, ``Time`` the envelope's ``time`` and ``Resources`` empty.

    :raises ValueError: the envelope has no id or type, a time without offset, or data that is not JSON
        (``NaN`` included: EventBridge would refuse it as ``MalformedDetail``).
    :raises TypeError: the envelope holds a value JSON cannot represent.
    """
    if not isinstance(envelope, Mapping):
        raise TypeError(f"an envelope must be a mapping (a CloudEvents dict), got {type(envelope).__name__}")
    envelope_id = envelope.get("id")
    if not isinstance(envelope_id, str) or not envelope_id:
        raise ValueError(f"envelope has no 'id' (got {envelope_id!r}): every CloudEvents envelope needs one")
    event_type = envelope.get("type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise ValueError(f"envelope {envelope_id!r} has no 'type' (got {event_type!r}): it becomes the DetailType")
    if not bus_name:
        raise ValueError("bus_name is empty: give the event bus name or ARN")
    return {
        "Source": EVENT_SOURCE,
        "DetailType": event_type,
        "Detail": json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), allow_nan=False),
        "EventBusName": bus_name,
        "Time": _parse_time(envelope.get("time"), envelope_id),
        "Resources": [],
    }


def _utf8_len(value: Any) -> int:
    return len(str(value).encode("utf-8"))


def entry_size(entry: Mapping[str, Any]) -> int:
    """The size EventBridge counts for one ``PutEventsRequestEntry`` against the per-request limit.

    Per "Calculating Amazon EventBridge PutEvents event entry size" (EventBridge User Guide): 14 bytes for ``Time``
    if given, plus the UTF-8 bytes of ``Source`` and ``DetailType``, of ``Detail`` if given, and of each
    ``Resources`` item. ``EventBusName`` and the other fields do not count.
    """
    size = TIME_SIZE if entry.get("Time") is not None else 0
    size += _utf8_len(entry.get("Source") or "") + _utf8_len(entry.get("DetailType") or "")
    if entry.get("Detail") is not None:
        size += _utf8_len(entry["Detail"])
    size += sum(_utf8_len(resource) for resource in entry.get("Resources") or () if resource is not None)
    return size


class BatchPlan(list[list[int]]):
    """Batches of entry indices, in input order; :attr:`oversize` maps each entry left out to its size."""

    def __init__(self, batches: list[list[int]], oversize: dict[int, int], sizes: list[int], max_bytes: int) -> None:
        super().__init__(batches)
        self.oversize = oversize
        self.sizes = sizes
        self.max_bytes = max_bytes


def plan_batches(entries: Sequence[Mapping[str, Any]], max_entries: int = MAX_ENTRIES_PER_REQUEST,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> BatchPlan:
    """Pack entries, in order, into requests of at most ``max_entries`` whose sizes add up to at most ``max_bytes``.

    An entry larger than ``max_bytes`` on its own is in no batch: it is listed in the plan's ``oversize``
    (index → size), and the publisher reports it as a permanent failure.
    """
    if not 1 <= max_entries <= MAX_ENTRIES_PER_REQUEST:
        raise ValueError(f"max_entries must be between 1 and {MAX_ENTRIES_PER_REQUEST} (EventBridge's limit per "
                         f"PutEvents request), got {max_entries}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    sizes = [entry_size(entry) for entry in entries]
    batches: list[list[int]] = []
    oversize: dict[int, int] = {}
    current: list[int] = []
    current_bytes = 0
    for index, size in enumerate(sizes):
        if size > max_bytes:
            oversize[index] = size
            continue
        if current and (len(current) >= max_entries or current_bytes + size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    if current:
        batches.append(current)
    return BatchPlan(batches, oversize, sizes, max_bytes)


# -- outcomes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """EventBridge accepted the event: ``event_id`` is its EventBridge id."""

    event_id: str
    attempts: int = 1
    delivered: bool = True


@dataclass(frozen=True)
class Failed:
    """The event was not published.

    ``transient``: a later retry may deliver it (throttling, outage, unreachable endpoint). ``target_error``: the
    error is about the target (credentials, permissions, missing bus), not the event: fix the target, do not
    dead-letter the event for it. ``attempts``: sends of this event in this call (0 when never sent).
    """

    code: str
    message: str
    transient: bool
    attempts: int = 0
    target_error: bool = False
    delivered: bool = False


Outcome = Delivered | Failed


class PublishResult(Mapping[str, Outcome]):
    """What :meth:`EventBridgePublisher.publish` did: envelope id → :class:`Delivered` or :class:`Failed`,
    in input order, plus the number of ``PutEvents`` requests made."""

    def __init__(self, outcomes: Mapping[str, Outcome], requests: int) -> None:
        self._outcomes = dict(outcomes)
        self.requests = requests

    def __getitem__(self, envelope_id: str) -> Outcome:
        return self._outcomes[envelope_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._outcomes)

    def __len__(self) -> int:
        return len(self._outcomes)

    def __repr__(self) -> str:
        return (f"PublishResult(delivered={len(self.delivered)}, failed={len(self.failed)}, "
                f"requests={self.requests})")

    @property
    def delivered(self) -> dict[str, str]:
        """Envelope id → EventBridge event id, for the events published."""
        return {key: o.event_id for key, o in self._outcomes.items() if isinstance(o, Delivered)}

    @property
    def failed(self) -> dict[str, Failed]:
        """Envelope id → why, for the events not published."""
        return {key: o for key, o in self._outcomes.items() if isinstance(o, Failed)}

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for XCom): no payloads, only ids, codes and messages."""
        return {
            "requests": self.requests,
            "delivered": self.delivered,
            "failed": {key: {"code": f.code, "message": f.message, "transient": f.transient, "attempts": f.attempts,
                             "target_error": f.target_error} for key, f in self.failed.items()},
        }


# -- publisher --------------------------------------------------------------------------------------------


#: EventBridge's own default: up to 5 sends per entry, waits up to 20 s.
DEFAULT_RETRY = RetryPolicy(attempts=5, initial=0.5, maximum=20.0, jitter=0.5)


class _TransientLeft(Exception):
    """Some entries of the batch failed transiently: send them again after a pause."""


@dataclass(frozen=True)
class _CallError:
    """A whole-call error, classified."""

    kind: str  # "transient" | "target" | "rejected"
    code: str
    message: str


class EventBridgePublisher:
    """Publishes envelopes to one EventBridge bus; see the module docstring for the delivery rules.

    :param client_or_hook: a boto3 ``events`` client, or an ``EventBridgeHook`` (its ``.conn`` is used, built at
        the first publish). botocore's own retries (the connection's ``config_kwargs``) run inside each attempt.
    :param bus_name: the event bus name or ARN.
    :param max_bytes: the size limit of one request, counted as :func:`entry_size` does (default 256 KB).
    :param max_entries: entries per request, at most 10.
    :param retry: how transient errors are retried.
    :param sleep: how to wait between attempts (tests pass a fake).
    :param max_in_flight: requests sent at once (after the first, which goes alone so that a missing bus or bad
        credentials stop the call after one request).
    """

    def __init__(self, client_or_hook: Any, bus_name: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_entries: int = MAX_ENTRIES_PER_REQUEST, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        if not bus_name:
            raise ValueError("bus_name is empty: give the event bus name or ARN")
        plan_batches([], max_entries, max_bytes)  # validates the limits now rather than at the first publish
        self.client_or_hook = client_or_hook
        self.bus_name = bus_name
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.retry = retry or DEFAULT_RETRY
        self.sleep = sleep

    @cached_property
    def client(self) -> Any:
        """The boto3 ``events`` client (the hook's ``.conn``)."""
        target = self.client_or_hook
        if hasattr(target, "put_events"):
            return target
        return target.conn

    @property
    def connection_label(self) -> str:
        conn_id = getattr(self.client_or_hook, "aws_conn_id", None)
        return f"connection {conn_id!r}" if conn_id else "the given boto3 client"

    def _where(self) -> str:
        meta = getattr(self.__dict__.get("client"), "meta", None)
        region = getattr(meta, "region_name", None) or "?"
        endpoint = getattr(meta, "endpoint_url", None) or "?"
        return f"region {region}, endpoint {endpoint}, {self.connection_label}"

    # -- public

    def publish(self, envelopes: Sequence[Mapping[str, Any]]) -> PublishResult:
        """Publish every envelope once; return each one's outcome. Never raises for an event's outcome.

        :raises ValueError: an envelope has no string ``id``, or two envelopes share one (programming errors:
            their outcomes could not be reported).
        """
        ids = self._ids(envelopes)
        outcomes: dict[str, Outcome] = {}
        entries: list[dict[str, Any]] = []
        entry_ids: list[str] = []
        for envelope_id, envelope in zip(ids, envelopes, strict=True):
            try:
                entries.append(entry_for(envelope, self.bus_name))
            except (TypeError, ValueError) as error:
                outcomes[envelope_id] = Failed("InvalidEnvelope", f"not sent: {error}", transient=False)
                continue
            entry_ids.append(envelope_id)
        plan = plan_batches(entries, self.max_entries, self.max_bytes)
        for index, size in plan.oversize.items():
            outcomes[entry_ids[index]] = Failed(
                "EntryTooLarge",
                f"not sent: the event's PutEvents entry is {size} bytes and the limit is {plan.max_bytes} bytes per "
                "request (counting Source, DetailType, Detail, Resources and 14 bytes for Time): make the event "
                "smaller, e.g. store the payload in S3 and put its URL in the event",
                transient=False,
            )
        state = _PublishState(entries, entry_ids, outcomes)
        log.info("EventBridge bus %s: %d event(s), %d to send in %d request(s) of ≤%d entries and ≤%d bytes; "
                 "%d invalid, %d too large", self.bus_name, len(ids), sum(map(len, plan)), len(plan),
                 self.max_entries, self.max_bytes, len(ids) - len(entries), len(plan.oversize))
        batches = list(plan)
        if batches:
            self._send_unless_fatal(batches[0], state)
        if len(batches) > 1 and self.max_in_flight > 1 and state.fatal is None:
            _ = self.client  # built once, before the threads share it (boto3 clients are thread-safe)
            with ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="eventbridge") as pool:
                list(pool.map(lambda batch: self._send_unless_fatal(batch, state), batches[1:]))
        else:
            for batch in batches[1:]:
                self._send_unless_fatal(batch, state)
        result = PublishResult({envelope_id: outcomes[envelope_id] for envelope_id in ids}, state.requests)
        self._log_result(result)
        return result

    # -- internals

    def _send_unless_fatal(self, batch: list[int], state: _PublishState) -> None:
        if state.fatal is not None:
            for index in batch:
                state.outcomes[state.ids[index]] = Failed(state.fatal.code, f"not sent: {state.fatal.message}",
                                                          transient=False, target_error=True)
            return
        self._send_batch(batch, state)

    @staticmethod
    def _ids(envelopes: Sequence[Mapping[str, Any]]) -> list[str]:
        ids: list[str] = []
        for position, envelope in enumerate(envelopes):
            envelope_id = envelope.get("id") if isinstance(envelope, Mapping) else None
            if not isinstance(envelope_id, str) or not envelope_id:
                raise ValueError(f"envelopes[{position}] has no string 'id' (got {envelope_id!r}): nothing was sent")
            ids.append(envelope_id)
        duplicates = sorted(key for key, count in Counter(ids).items() if count > 1)
        if duplicates:
            raise ValueError(f"{len(duplicates)} envelope id(s) appear more than once ({', '.join(duplicates[:5])}): "
                             "publish each event once per call; nothing was sent")
        return ids

    def _send_batch(self, batch: list[int], state: _PublishState, prior_attempts: int = 0) -> None:
        """Send one batch; resend its transiently failed entries until they succeed or attempts run out."""
        remaining = list(batch)
        attempts = dict.fromkeys(batch, prior_attempts)
        last_error: dict[int, tuple[str, str]] = {}

        def attempt() -> None:
            nonlocal remaining
            for index in remaining:
                attempts[index] += 1
            try:
                client = self.client
                state.count_request()
                response = client.put_events(Entries=[state.entries[i] for i in remaining])
            except (ClientError, BotoCoreError) as error:
                call_error = self._classify(error)
                if call_error.kind == "transient":
                    for index in remaining:
                        last_error[index] = (call_error.code, call_error.message)
                    raise _TransientLeft from error
                if call_error.kind == "target":
                    state.fatal = call_error
                    for index in remaining:
                        state.outcomes[state.ids[index]] = Failed(call_error.code, call_error.message, transient=False,
                                                                  attempts=attempts[index], target_error=True)
                    remaining = []
                    return
                if len(remaining) > 1:  # one bad entry may have failed the request: isolate it
                    log.warning("EventBridge bus %s refused a request of %d entries (%s): sending them one by one",
                                self.bus_name, len(remaining), call_error.code)
                    isolated, remaining = remaining, []
                    for index in isolated:
                        if state.fatal is None:
                            self._send_batch([index], state, prior_attempts=attempts[index])
                        else:
                            state.outcomes[state.ids[index]] = Failed(
                                state.fatal.code, f"not sent: {state.fatal.message}", transient=False,
                                attempts=attempts[index], target_error=True)
                    return
                state.outcomes[state.ids[remaining[0]]] = Failed(call_error.code, call_error.message,
                                                                 transient=False, attempts=attempts[remaining[0]])
                remaining = []
                return
            results = list(response.get("Entries") or [])
            retry_next: list[int] = []
            for position, index in enumerate(remaining):
                item = results[position] if position < len(results) else {}
                envelope_id = state.ids[index]
                if item.get("EventId") and not item.get("ErrorCode"):
                    state.outcomes[envelope_id] = Delivered(item["EventId"], attempts[index])
                    continue
                code = item.get("ErrorCode") or "MissingResult"
                message = item.get("ErrorMessage") or ("EventBridge returned no result for this entry"
                                                       if code == "MissingResult" else "")
                if code in TRANSIENT_ERROR_CODES or code == "MissingResult":
                    last_error[index] = (code, message)
                    retry_next.append(index)
                else:
                    state.outcomes[envelope_id] = Failed(code, self._describe_entry_error(code, message),
                                                         transient=False, attempts=attempts[index],
                                                         target_error=code in TARGET_ERROR_CODES)
            if retry_next:
                log.info("EventBridge bus %s: %d of %d entries failed transiently (%s): resending only those",
                         self.bus_name, len(retry_next), len(remaining),
                         ", ".join(sorted({last_error[i][0] for i in retry_next})))
                remaining = retry_next
                raise _TransientLeft

        policy = self.retry
        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential_jitter(initial=policy.initial, max=policy.maximum, jitter=policy.jitter),
            retry=retry_if_exception_type(_TransientLeft),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            retrying(attempt)
        except _TransientLeft:
            for index in remaining:
                code, message = last_error[index]
                state.outcomes[state.ids[index]] = Failed(
                    code,
                    f"EventBridge did not accept the event after {attempts[index]} attempt(s); last error "
                    f"{code}: {message} — a later retry may deliver it",
                    transient=True, attempts=attempts[index],
                )

    def _classify(self, error: BaseException) -> _CallError:
        """Sort a whole-call error into transient (send again), target (stop: fix the target) or rejected."""
        if isinstance(error, ClientError):
            details = error.response.get("Error") or {}
            code = str(details.get("Code") or "ClientError")
            text = str(details.get("Message") or error)
            status = int((error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
            if code in TRANSIENT_ERROR_CODES or status == 429 or status >= 500:
                return _CallError("transient", code, f"{code}: {text}")
            if code in BUS_NOT_FOUND_CODES:
                return _CallError("target", code, (
                    f"event bus {self.bus_name!r} was not found ({self._where()}): create the bus, or fix the "
                    f"target's bus name or the connection's region / endpoint_url. EventBridge said {code}: {text}"))
            if code in CREDENTIAL_ERROR_CODES:
                return _CallError("target", code, (
                    f"EventBridge refused the credentials of {self.connection_label} ({self._where()}): fix the "
                    f"connection's access key / secret (login / password) or role. EventBridge said {code}: {text}"))
            if code in ACCESS_ERROR_CODES:
                return _CallError("target", code, (
                    f"{self.connection_label} may not put events on bus {self.bus_name!r} ({self._where()}): grant "
                    f"its identity events:PutEvents on the bus. EventBridge said {code}: {text}"))
            return _CallError("rejected", code, f"EventBridge refused the request: {code}: {text}")
        if isinstance(error, BotoConnectionError | HTTPClientError):
            return _CallError("transient", type(error).__name__,
                              f"could not reach EventBridge ({self._where()}): {error}")
        if isinstance(error, ParamValidationError):
            return _CallError("rejected", "ParamValidationError", f"botocore refused the entry: {error}")
        return _CallError("target", type(error).__name__, (
            f"could not call EventBridge with {self.connection_label} ({self._where()}): {error} — check the "
            "connection's credentials and region"))

    def _describe_entry_error(self, code: str, message: str) -> str:
        hint = ""
        if code in BUS_NOT_FOUND_CODES:
            hint = f" — event bus {self.bus_name!r} was not found ({self._where()}): create it or fix the bus name"
        elif code in ACCESS_ERROR_CODES:
            hint = (f" — {self.connection_label} may not put events with source {EVENT_SOURCE!r} on bus "
                    f"{self.bus_name!r}: grant events:PutEvents")
        elif code == "MalformedDetail":
            hint = " — the envelope is not valid JSON for EventBridge"
        return f"EventBridge refused the event: {code}: {message}{hint}"

    def _log_result(self, result: PublishResult) -> None:
        failed = result.failed
        transient = sum(1 for f in failed.values() if f.transient)
        log.info("EventBridge bus %s: %d delivered, %d failed (%d transient, %d permanent) in %d request(s)",
                 self.bus_name, len(result.delivered), len(failed), transient, len(failed) - transient,
                 result.requests)
        if failed:
            codes = Counter(f.code for f in failed.values())
            log.warning("EventBridge bus %s: %d event(s) not published: %s", self.bus_name, len(failed),
                        ", ".join(f"{code}: {count}" for code, count in codes.most_common()))
            fatal = next((f for f in failed.values() if f.target_error), None)
            if fatal is not None:
                log.error("EventBridge bus %s: %s", self.bus_name, fatal.message)


class _PublishState:
    """The mutable state of one :meth:`EventBridgePublisher.publish` call."""

    def __init__(self, entries: list[dict[str, Any]], ids: list[str], outcomes: dict[str, Outcome]) -> None:
        self.entries = entries
        self.ids = ids
        self.outcomes = outcomes
        self.requests = 0
        self.fatal: _CallError | None = None
        self._lock = threading.Lock()

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1
