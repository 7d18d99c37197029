"""A fault-injecting HTTP proxy in front of moto's server: EventBridge partial failures on demand.

:class:`FaultyEventBridge` listens on 127.0.0.1 (a ``ThreadingHTTPServer`` in a daemon thread) and forwards every
request to moto unchanged, except ``AWSEvents.PutEvents`` (header ``X-Amz-Target``): for each entry it asks a
rule, which reads the entry's ``Detail`` (the CloudEvents envelope), whether to reject it. Rejected entries are
taken out of the forwarded request and put back into moto's answer, in their positions, as failed entries with an
``ErrorCode`` and ``ErrorMessage``; ``FailedEntryCount`` counts them too, like a real EventBridge partial failure.
A request whose entries are all rejected is answered by the proxy without reaching moto.

* A permanent :class:`Fault` (``times=None``) rejects the entry every time, e.g. ``InvalidArgument``, which
  ``EventBridgePublisher`` treats as a permanent error of the event (dead letter).
* A transient :class:`Fault` (``times=k``) rejects the first ``k`` sightings of that envelope id (over every
  client of the proxy), e.g. ``ThrottlingException``: a retry after that is forwarded.

The rule :func:`marker_rule` reads a marker the test writes into the event's ``subject``: ``…#fail=permanent`` or
``…#fail=transient:3``; events are thus crafted to fail, and the decision depends on the entry alone.

:meth:`FaultyEventBridge.hold_response_when` makes the proxy forward one chosen ``PutEvents`` request to moto and
then hold its answer until :meth:`FaultyEventBridge.release` (so that the client can be killed while moto has
already accepted the entries); :attr:`FaultyEventBridge.held` is set when that happens.

:attr:`FaultyEventBridge.rejected_access_keys`: requests signed with one of these access key ids are refused the
way AWS refuses unknown credentials (HTTP 400 ``UnrecognizedClientException``), whatever they ask.

Counters (:attr:`FaultyEventBridge.stats`) and a log of every entry (:attr:`FaultyEventBridge.entries`) tell what
the proxy did.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

PUT_EVENTS_TARGET = "AWSEvents.PutEvents"

PERMANENT_CODE = "InvalidArgument"
"""A per-entry error EventBridge returns for an entry it will never accept (not transient for the publisher)."""

TRANSIENT_CODE = "ThrottlingException"
"""A per-entry error EventBridge returns when throttling (transient for the publisher: the entry is resent)."""

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                         "upgrade", "content-length", "host"})


@dataclass(frozen=True)
class Fault:
    """How to reject an entry: ``times=None`` always (permanent), ``times=k`` the first ``k`` sightings of its id."""

    code: str
    message: str
    times: int | None = None

    @property
    def transient(self) -> bool:
        return self.times is not None


def permanent(code: str = PERMANENT_CODE) -> Fault:
    return Fault(code, "Parameter Detail is not valid for this bus (injected by the faulty proxy)")


def transient(times: int, code: str = TRANSIENT_CODE) -> Fault:
    if times < 1:
        raise ValueError(f"a transient fault rejects at least once, got times={times}")
    return Fault(code, "Rate exceeded (injected by the faulty proxy)", times)


Rule = Callable[[Mapping[str, Any]], Fault | None]
"""Envelope (the entry's ``Detail``, parsed) → the fault to inject, or ``None`` to forward the entry."""

_MARKER = re.compile(r"#fail=(?:(?P<permanent>permanent)|transient:(?P<times>[0-9]+))$")


def marker_rule(envelope: Mapping[str, Any]) -> Fault | None:
    """The fault named by a ``#fail=permanent`` or ``#fail=transient:<k>`` suffix of the envelope's subject."""
    match = _MARKER.search(str(envelope.get("subject") or ""))
    if match is None:
        return None
    return permanent() if match["permanent"] else transient(int(match["times"]))


@dataclass(frozen=True)
class EntryRecord:
    """One entry of one ``PutEvents`` request, as the proxy handled it.

    ``verdict``: ``forwarded`` (sent to moto; ``accepted`` says whether moto returned an ``EventId``),
    ``transient`` or ``permanent`` (rejected by the proxy). ``phase`` is the proxy's :attr:`~FaultyEventBridge.phase`
    when the request arrived; ``request`` numbers the ``PutEvents`` requests from 1.
    """

    envelope_id: str | None
    verdict: str
    code: str | None
    accepted: bool
    phase: str
    request: int
    at: float


class FaultyEventBridge:
    """The proxy; use :func:`running` (or :meth:`start` / :meth:`close`)."""

    def __init__(self, upstream_url: str, rule: Rule = marker_rule) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream_url!r}")
        self.upstream = (parts.hostname, parts.port)
        self.rule = rule
        self.phase = "-"
        self.stats: Counter[str] = Counter()
        self.entries: list[EntryRecord] = []
        self.held = threading.Event()
        self.rejected_access_keys: set[str] = set()
        self._busy = 0
        self.errors: list[str] = []
        self._release = threading.Event()
        self._hold: Callable[[list[Mapping[str, Any]]], bool] | None = None
        self._sightings: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultyEventBridge:
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-eventbridge", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def hold_response_when(self, predicate: Callable[[list[Mapping[str, Any]]], bool]) -> None:
        """Hold moto's answer to the first ``PutEvents`` request whose forwarded envelopes satisfy ``predicate``
        (the request has reached moto) until :meth:`release`; :attr:`held` is set meanwhile. Once only."""
        with self._lock:
            self._hold = predicate
            self.held.clear()
            self._release.clear()

    def release(self) -> None:
        """Let a held answer go (to a client that may be dead by now)."""
        with self._lock:
            self._hold = None
        self._release.set()

    # -- what happened

    def ids(self, verdict: str | None = None, *, phase: str | None = None, accepted: bool | None = None) -> list[str]:
        """Envelope ids of the logged entries matching the filters, in arrival order (repeats included)."""
        with self._lock:
            records = list(self.entries)
        return [r.envelope_id for r in records if r.envelope_id is not None
                and (verdict is None or r.verdict == verdict) and (phase is None or r.phase == phase)
                and (accepted is None or r.accepted == accepted)]

    # -- the work

    def _judge(self, entry: Mapping[str, Any]) -> tuple[str | None, Fault | None]:
        try:
            envelope = json.loads(entry.get("Detail") or "null")
        except ValueError:
            return None, None
        if not isinstance(envelope, Mapping):
            return None, None
        envelope_id = envelope.get("id") if isinstance(envelope.get("id"), str) else None
        fault = self.rule(envelope)
        if fault is None or envelope_id is None:
            return envelope_id, None
        with self._lock:
            self._sightings[envelope_id] += 1
            seen = self._sightings[envelope_id]
        if fault.transient and fault.times is not None and seen > fault.times:
            return envelope_id, None
        return envelope_id, fault

    def put_events(self, handler: _Handler, body: bytes) -> None:
        request = json.loads(body or b"{}")
        entries = list(request.get("Entries") or [])
        with self._lock:
            self.stats["put_events_requests"] += 1
            number = self.stats["put_events_requests"]
            phase = self.phase
        judged = [self._judge(entry) for entry in entries]
        forward = [entry for entry, (_, fault) in zip(entries, judged, strict=True) if fault is None]
        with self._lock:
            self._busy += 1
        try:
            answer = self._answer(handler, request, number, phase, judged, forward)
        finally:
            with self._lock:
                self._busy -= 1
        if answer is None:
            return
        hold = False
        headers = [("Content-Type", "application/x-amz-json-1.1")]
        with self._lock:
            if self._hold is not None and forward:
                envelopes = [json.loads(entry["Detail"]) for entry in forward]
                if self._hold(envelopes):
                    self._hold, hold = None, True
        if hold:
            self.held.set()
            if not self._release.wait(timeout=120):
                self.errors.append(f"PutEvents request {number}: held for 120 s and never released")
            with self._lock:
                self.stats["held_answers"] += 1
        handler.reply(200, headers, answer)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no PutEvents request is being forwarded or recorded (the held one aside)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._busy == 0:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"the proxy still forwards {self._busy} request(s) after {timeout} s")

    def _answer(self, handler: _Handler, request: dict[str, Any], number: int, phase: str,
                judged: list[tuple[str | None, Fault | None]], forward: list[dict[str, Any]]) -> bytes | None:
        """Forward the accepted entries, record every entry's outcome; return the merged answer (``None`` when a
        whole-call error from moto was passed through)."""
        upstream: dict[str, Any] = {"FailedEntryCount": 0, "Entries": []}
        if forward:
            status, headers, raw = self._forward(handler, json.dumps({**request, "Entries": forward}).encode())
            if status != 200:  # a whole-call error from moto: pass it through untouched
                self._record(number, phase, judged, [], whole_call_error=True)
                handler.reply(status, headers, raw)
                return None
            upstream = json.loads(raw)
            with self._lock:
                self.stats["forwarded_requests"] += 1
        else:
            with self._lock:
                self.stats["answered_locally"] += 1
        results = iter(upstream.get("Entries") or [])
        merged: list[dict[str, Any]] = []
        for _, fault in judged:
            if fault is None:
                merged.append(next(results, {}))
            else:
                merged.append({"ErrorCode": fault.code, "ErrorMessage": fault.message})
        failed = sum(1 for item in merged if item.get("ErrorCode") or not item.get("EventId"))
        self._record(number, phase, judged, merged)
        return json.dumps({**upstream, "FailedEntryCount": failed, "Entries": merged}).encode()

    def _record(self, number: int, phase: str, judged: list[tuple[str | None, Fault | None]],
                results: list[dict[str, Any]], *, whole_call_error: bool = False) -> None:
        now = time.time()
        with self._lock:
            for position, (envelope_id, fault) in enumerate(judged):
                if fault is not None:
                    verdict = "transient" if fault.transient else "permanent"
                    self.stats[f"rejected_{verdict}"] += 1
                    self.entries.append(EntryRecord(envelope_id, verdict, fault.code, False, phase, number, now))
                    continue
                item = results[position] if position < len(results) else {}
                accepted = bool(item.get("EventId")) and not item.get("ErrorCode") and not whole_call_error
                self.stats["forwarded_entries"] += 1
                self.stats["accepted_entries" if accepted else "upstream_failed_entries"] += 1
                self.entries.append(EntryRecord(envelope_id, "forwarded", item.get("ErrorCode"), accepted, phase,
                                                number, now))

    def _forward(self, handler: _Handler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the handler's request (with ``body``) to moto; return status, headers and body."""
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {key: value for key, value in handler.headers.items() if key.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, kept, raw
        finally:
            connection.close()

    def pass_through(self, handler: _Handler, body: bytes) -> None:
        with self._lock:
            self.stats["passed_through"] += 1
        handler.reply(*self._forward(handler, body))


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultyEventBridge
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall each

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            credential = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization") or "")
            if credential and credential.group(1) in self.proxy.rejected_access_keys:
                self.proxy.stats["rejected_credentials"] += 1
                self.reply(400, [("Content-Type", "application/x-amz-json-1.1"),
                                 ("x-amzn-ErrorType", "UnrecognizedClientException")],
                           json.dumps({"__type": "UnrecognizedClientException",
                                       "message": "The security token included in the request is invalid."}
                                      ).encode())
                return
            if self.headers.get("X-Amz-Target") == PUT_EVENTS_TARGET:
                self.proxy.put_events(self, body)
            else:
                self.proxy.pass_through(self, body)
        except (BrokenPipeError, ConnectionResetError):  # the client died (the test kills it on purpose)
            self.close_connection = True
        except Exception as error:  # report to the client and to the test rather than hang
            self.proxy.errors.append(f"{self.command} {self.path}: {type(error).__name__}: {error}")
            self.close_connection = True
            try:
                self.reply(502, [("Content-Type", "text/plain")], f"faulty proxy: {error}".encode())
            except OSError:
                pass

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

    def reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the counters tell what happened
        pass


@contextmanager
def running(upstream_url: str, rule: Rule = marker_rule) -> Iterator[FaultyEventBridge]:
    """A started proxy in front of ``upstream_url``, closed afterwards."""
    proxy = FaultyEventBridge(upstream_url, rule).start()
    try:
        yield proxy
    finally:
        proxy.close()
