"""Connect fan-out: our Send Email / Send SMS operators against the original plan's one call per recipient.

In one run, against the vendor sandbox in its own process (real Twilio and SendGrid SDKs over HTTP):

1. **E-mail, 10,000 recipients.** The original plan (``SendGridAPIClient(key)`` + ``sg.send(Mail(...))`` per
   recipient: one HTTP request each) against ``SendEmailOperator.execute()`` (one personalization per
   recipient, up to 1000 per request, exactly-once ledger). Target: at least 100x fewer HTTP requests.
2. **SMS, 1,000 messages, the sender's rate limit as the bottleneck.** The connection allows ``--rate``
   messages/s and every Twilio call takes ``--latency-ms``. The original plan (``client.messages.create`` per
   recipient, one after the other) against ``SendSmsOperator.execute()`` (paced to the rate, several requests in
   flight). Target: at least 90% of the rate, end to end. Then the same with 10% of the requests answered 429/500
   (``Retry-After: 1``): every message must be recorded exactly once, and the request rate must stay at the limit.

The operators run their real ``execute()`` with a minimal task-instance context, their hooks read Airflow
connections from ``AIRFLOW_CONN_*`` and the ledger is a migrated SQLite suite database. HTTP requests are counted
in this process at ``http.client`` and checked against what the sandbox recorded.

Run: ``make bench`` (every ``bench/*.py``) or ``.venv/bin/python bench/connect_fanout.py [--quick]``.
Exits 1 when a target is missed or a message was not delivered exactly once. Writes its section of
BENCHMARKS.md (not with ``--quick`` unless ``--write``).
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _common import HttpRequestLog, SandboxProcess, finish, machine, markdown_table, median, progress, spread

NAME = "connect_fanout"
TWILIO_SID = "AC" + "0" * 32  # the sandbox's documented development values, not credentials
TWILIO_TOKEN = "sandbox-twilio-auth-token"
SENDGRID_KEY = "SG.sandbox-key"
FROM_NUMBER = "+15005550006"
FROM_EMAIL = "noreply@demobank.example"
SUBJECT = "Your monthly statement is ready"
HTML = "<p>Dear customer,</p><p>your statement for May is ready in the Demo Bank app.</p>"
SMS_BODY = "Demo Bank: your card payment of $42.00 is due on 1 June. Reply STOP to opt out."
EMAIL_TARGET = 100.0  # x fewer HTTP requests
RATE_TARGET = 0.90  # of the sender's rate limit
RECONCILE_AFTER = 1.0  # the sandbox's lookups show a send at once (Twilio's default delay is 10 s, SendGrid's 600 s)

log = logging.getLogger("bench.connect_fanout")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--emails", type=int, default=10_000, help="e-mail recipients")
    parser.add_argument("--sms", type=int, default=1_000, help="SMS messages")
    parser.add_argument("--rate", type=float, default=50.0, help="the Twilio connection's rate_limit_per_second")
    parser.add_argument("--latency-ms", type=int, default=100, help="sandbox latency of every Twilio call")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each of our measurements (median reported)")
    parser.add_argument("--baseline-emails", type=int, default=None,
                        help="recipients of the original plan's e-mail run (default: --emails); fewer are scaled up")
    parser.add_argument("--baseline-sms", type=int, default=200,
                        help="messages of the original plan's SMS run (sequential at ~1/latency per second: a "
                             "smaller run is scaled up to --sms)")
    parser.add_argument("--fault-rate", type=float, default=0.10, help="share of SMS requests answered 429/500")
    parser.add_argument("--sandbox-workers", type=int, default=2, help="uvicorn workers of the sandbox process")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1,000 e-mails, 100 SMS, one run each, small baselines; no BENCHMARKS.md")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                        help="refresh this benchmark's section of BENCHMARKS.md (default: yes, except --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.emails, args.sms, args.repeat = min(args.emails, 1_000), min(args.sms, 100), 1
        args.baseline_sms = min(args.baseline_sms, 30)
    if args.baseline_emails is None:
        args.baseline_emails = args.emails
    args.baseline_emails = min(args.baseline_emails, args.emails)
    args.baseline_sms = min(args.baseline_sms, args.sms)
    if args.write is None:
        args.write = not args.quick
    for name in ("emails", "sms", "repeat", "baseline_emails", "baseline_sms"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.emails > 10_000 or args.sms > 10_000:
        parser.error("at most 10,000 e-mails / SMS: the sandbox lists at most 10,000 records to check")
    if args.rate <= 0:
        parser.error("--rate must be positive")
    return args


# -- environment (before anything imports Airflow) -------------------------------------------------------


def configure(workdir: Path, sandbox_url: str, rate: float) -> str:
    """Airflow home, the two connections and the suite database; return the database URL."""
    db_url = f"sqlite:///{workdir / 'demobank.db'}"
    os.environ.update({
        "AIRFLOW_HOME": str(workdir / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "DEMOBANK_DB_URL": db_url,
        "AIRFLOW_CONN_TWILIO_DEFAULT": json.dumps({
            "conn_type": "twilio", "host": sandbox_url, "login": TWILIO_SID, "password": TWILIO_TOKEN,
            "extra": {"from_number": FROM_NUMBER, "rate_limit_per_second": rate,
                      "reconcile_after_seconds": RECONCILE_AFTER}}),
        "AIRFLOW_CONN_SENDGRID_DEFAULT": json.dumps({
            "conn_type": "sendgrid", "host": sandbox_url, "password": SENDGRID_KEY,
            "extra": {"from_email": FROM_EMAIL, "reconcile_after_seconds": RECONCILE_AFTER}}),
    })
    from demobank.db.migrate import upgrade

    upgrade(db_url)
    # Imported now, not inside a timed run: both approaches start with their SDKs loaded.
    import sendgrid  # noqa: F401
    import twilio.rest  # noqa: F401

    import demobank.connect.operators  # noqa: F401

    for name in ("demobank", "twilio", "airflow", "alembic", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return db_url


# -- measurements ----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured send."""

    messages: int
    wall: float
    requests: int
    accepted_requests: int
    busiest_second: int
    exactly_once: bool
    ledger_seconds: float = 0.0
    claim_seconds: float = 0.0
    http_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.messages / self.wall

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.wall


class Stopwatch:
    """Thread-seconds spent in the ledger and in the vendor calls during one of our runs."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()

    @contextmanager
    def patched(self) -> Iterator[Stopwatch]:
        from demobank.connect.ledger import DeliveryLedger
        from demobank.connectors.sendgrid import SendGridHook
        from demobank.connectors.twilio import TwilioHook

        targets = [(DeliveryLedger, name, "ledger") for name in ("claim", "start_attempt", "mark_accepted",
                                                                 "mark_failed")]
        targets += [(SendGridHook, "send_mail", "http"), (TwilioHook, "send_sms", "http")]
        originals = [(cls, name, cls.__dict__[name]) for cls, name, _ in targets]
        for cls, name, bucket in targets:
            setattr(cls, name, self._timed(cls.__dict__[name], bucket, "claim" if name == "claim" else None))
        try:
            yield self
        finally:
            for cls, name, original in originals:
                setattr(cls, name, original)

    def _timed(self, function: Callable[..., Any], bucket: str, also: str | None) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[bucket] += elapsed
                if also:
                    self.seconds[also] += elapsed

        return wrapper


def task_context(task_id: str) -> tuple[dict[str, Any], Any]:
    """A minimal Airflow context (what the operators read of it) with a fresh run id, and its ledger scope."""
    from demobank.connect.ledger import DeliveryScope

    ti = SimpleNamespace(dag_id="bench_connect_fanout", run_id=f"bench__{uuid.uuid4().hex}", task_id=task_id,
                         map_index=-1)
    return {"ti": ti}, DeliveryScope(ti.dag_id, ti.run_id, ti.task_id, -1)


def execute(operator: Any, context: dict[str, Any]) -> Any:
    """Call ``operator.execute(context)`` the way Airflow's task runner does (it marks the call as its own, so
    the operator's safeguard against calls from outside a task runner lets it through)."""
    from airflow.sdk.bases.operator import ExecutorSafeguard

    ctx = contextvars.copy_context()
    ctx.run(ExecutorSafeguard.tracker.set, operator)
    return ctx.run(operator.execute, context=context)


def email_addresses(count: int) -> list[str]:
    return [f"customer{i:05d}@example.com" for i in range(count)]


def phone_numbers(count: int) -> list[str]:
    return [f"+1555{i:07d}" for i in range(count)]


def check_email(sandbox: SandboxProcess, expected: list[str]) -> tuple[int, bool, list[str]]:
    """(accepted requests, every recipient exactly once, problems) from the sandbox's records."""
    records = sandbox.messages("email")
    got = Counter(address for record in records for address in record["recipients"])
    problems = []
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    missing = len(set(expected) - set(got))
    if duplicates or missing or set(got) - set(expected):
        problems.append(f"e-mail: {missing} recipient(s) missing, {duplicates} duplicate(s) in the sandbox")
    return len(records), not problems, problems


def check_sms(sandbox: SandboxProcess, expected: list[str]) -> tuple[int, bool, list[str]]:
    records = sandbox.messages("sms")
    got = Counter(record["to"] for record in records)
    problems = []
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    missing = len(set(expected) - set(got))
    if duplicates or missing or set(got) - set(expected):
        problems.append(f"SMS: {missing} number(s) missing, {duplicates} duplicate(s) in the sandbox")
    return len(records), not problems, problems


def baseline_email(sandbox: SandboxProcess, count: int) -> Run:
    """The original plan: a new SendGridAPIClient and one ``send(Mail(...))`` per recipient."""
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import Mail

    sandbox.reset()
    to = email_addresses(count)
    with HttpRequestLog.window(sandbox.port) as window:
        for address in to:
            message = Mail(from_email=FROM_EMAIL, to_emails=address, subject=SUBJECT, html_content=HTML)
            sg = SendGridAPIClient(SENDGRID_KEY, host=sandbox.url)
            response = sg.send(message)
            if response.status_code != 202:
                raise RuntimeError(f"the sandbox answered {response.status_code} to the original plan's send")
    accepted, once, problems = check_email(sandbox, to)
    return Run(count, window.seconds, window.count, accepted, window.busiest_second(), once, problems=problems)


def ours_email(sandbox: SandboxProcess, count: int) -> Run:
    from demobank.connect.operators import SendEmailOperator

    sandbox.reset()
    to = email_addresses(count)
    context, _ = task_context("send_email")
    operator = SendEmailOperator(task_id="send_email", to=to, subject=SUBJECT, html_content=HTML)
    with Stopwatch().patched() as watch, HttpRequestLog.window(sandbox.port) as window:
        execute(operator, context)
    accepted, once, problems = check_email(sandbox, to)
    return Run(count, window.seconds, window.count, accepted, window.busiest_second(), once,
               watch.seconds["ledger"], watch.seconds["claim"], watch.seconds["http"], problems)


def baseline_sms(sandbox: SandboxProcess, count: int, latency_ms: int) -> Run:
    """The original plan: ``client.messages.create`` per recipient, one after the other (one client, as the
    plan's module-level ``twilio(accountSid, authToken)``), no pacing."""
    from twilio.rest import Client

    sandbox.reset()
    sandbox.set_faults(latency_ms=latency_ms, channels=["sms"])
    to = phone_numbers(count)
    client = Client(TWILIO_SID, TWILIO_TOKEN)
    client.api.base_url = sandbox.url
    with HttpRequestLog.window(sandbox.port) as window:
        for number in to:
            client.messages.create(body=SMS_BODY, from_=FROM_NUMBER, to=number)
    accepted, once, problems = check_sms(sandbox, to)
    return Run(count, window.seconds, window.count, accepted, window.busiest_second(), once, problems=problems)


def ours_sms(sandbox: SandboxProcess, count: int, latency_ms: int, fault_rate: float = 0.0) -> Run:
    from demobank.connect.ledger import DeliveryLedger
    from demobank.connect.operators import SendSmsOperator
    from demobank.db.engine import get_engine

    sandbox.reset()
    faults: dict[str, Any] = {"latency_ms": latency_ms, "channels": ["sms"]}
    if fault_rate:
        faults.update(error_rate=fault_rate, error_statuses=[429, 500], retry_after=1)
    sandbox.set_faults(**faults)
    to = phone_numbers(count)
    context, scope = task_context("send_sms")
    operator = SendSmsOperator(task_id="send_sms", to=to, body=SMS_BODY)
    with Stopwatch().patched() as watch, HttpRequestLog.window(sandbox.port) as window:
        sids = execute(operator, context)
    sandbox.set_faults(latency_ms=0, error_rate=0.0)
    accepted, once, problems = check_sms(sandbox, to)
    ledger = DeliveryLedger(get_engine()).status_counts(scope)
    if ledger != {"accepted": count} or len(set(sids)) != count:
        problems.append(f"SMS: the ledger says {ledger}, {len(set(sids))} distinct SIDs for {count} messages")
        once = False
    return Run(count, window.seconds, window.count, accepted, window.busiest_second(), once,
               watch.seconds["ledger"], watch.seconds["claim"], watch.seconds["http"], problems)


# -- the report ------------------------------------------------------------------------------------------


@dataclass
class Results:
    args: argparse.Namespace
    email_base: Run
    email_ours: list[Run]
    sms_base: Run
    sms_ours: list[Run]
    sms_faults: list[Run]

    def scaled(self, run: Run, full: int) -> tuple[float, float]:
        """(requests, wall seconds) of a baseline run scaled to ``full`` messages (linear: one request each,
        one after the other)."""
        factor = full / run.messages
        return run.requests * factor, run.wall * factor

    @property
    def email_ratio(self) -> float:
        return self.scaled(self.email_base, self.args.emails)[0] / median([r.requests for r in self.email_ours])

    @property
    def sms_rate_share(self) -> float:
        return median([r.per_second for r in self.sms_ours]) / self.args.rate

    def failures(self) -> list[str]:
        missed = []
        if self.email_ratio < EMAIL_TARGET:
            missed.append(f"e-mail: {self.email_ratio:.0f}x fewer HTTP requests than the original plan; the target "
                          f"is at least {EMAIL_TARGET:.0f}x")
        if self.sms_rate_share < RATE_TARGET:
            missed.append(f"SMS: {self.sms_rate_share:.1%} of the sender's rate limit ({self.args.rate:g}/s); the "
                          f"target is at least {RATE_TARGET:.0%}")
        for run in [self.email_base, *self.email_ours, self.sms_base, *self.sms_ours, *self.sms_faults]:
            missed += run.problems
        return list(dict.fromkeys(missed))

    def email_table(self) -> str:
        a = self.args
        base, ours = self.email_base, self.email_ours
        base_requests, base_wall = self.scaled(base, a.emails)
        base_label = "original plan: new client + `send(Mail)` per recipient"
        if base.messages != a.emails:
            base_label += f" (measured on {base.messages:,}, scaled x{a.emails / base.messages:.3g})"
        ours_wall = [r.wall for r in ours]
        scale = a.emails / base.messages
        rows = [
            [base_label, f"{a.emails:,}", f"{base_requests:,.0f}", f"{base.accepted_requests * scale:,.0f}",
             f"{base_wall:.1f}", f"{a.emails / base_wall:,.0f}", "1x", "yes" if base.exactly_once else "**no**"],
            [f"ours: `SendEmailOperator` (median of {len(ours)})", f"{a.emails:,}",
             f"{median([r.requests for r in ours]):,.0f}", f"{median([r.accepted_requests for r in ours]):,.0f}",
             spread(ours_wall), f"{median([r.per_second for r in ours]):,.0f}",
             f"**{self.email_ratio:,.0f}x fewer**", "yes" if all(r.exactly_once for r in ours) else "**no**"],
        ]
        header = ["approach", "recipients", "HTTP requests", "accepted by sandbox", "wall s", "recipients/s",
                  "requests vs plan", "each recipient once"]
        return markdown_table(header, rows)

    def sms_table(self) -> str:
        a = self.args
        base = self.sms_base
        _, base_wall = self.scaled(base, a.sms)
        base_rate = base.per_second
        label = "original plan: `messages.create` per recipient, sequential"
        if base.messages != a.sms:
            label += f" (measured on {base.messages:,}, scaled x{a.sms / base.messages:.3g})"
        rows = [[label, f"{a.sms:,}", f"{base.requests * a.sms / base.messages:,.0f}", f"{base_wall:.1f}",
                 f"{base_rate:.1f}", f"{base_rate / a.rate:.0%}",
                 f"{base.requests_per_second:.1f} ({base.requests_per_second / a.rate:.0%})",
                 base.busiest_second, "1x", "yes" if base.exactly_once else "**no**"]]
        for label, runs in ((f"ours: `SendSmsOperator` (median of {len(self.sms_ours)})", self.sms_ours),
                            (f"ours, {a.fault_rate:.0%} of requests 429/500, Retry-After 1 s "
                             f"(median of {len(self.sms_faults)})", self.sms_faults)):
            rate = median([r.per_second for r in runs])
            rows.append([label, f"{a.sms:,}", f"{median([r.requests for r in runs]):,.0f}",
                         spread([r.wall for r in runs]), f"{rate:.1f}", f"**{rate / a.rate:.0%}**",
                         f"{median([r.requests_per_second for r in runs]):.1f} "
                         f"({median([r.requests_per_second for r in runs]) / a.rate:.0%})",
                         f"{max(r.busiest_second for r in runs)} ({median([r.busiest_second for r in runs]):.0f})",
                         f"{rate / base_rate:.1f}x",
                         "yes" if all(r.exactly_once for r in runs) else "**no**"])
        header = ["approach", "messages", "HTTP requests", "wall s", "delivered msgs/s", "of rate limit",
                  "requests/s (of limit)", "busiest 1 s: max (median)", "speed vs plan", "each number once"]
        return markdown_table(header, rows)

    def markdown(self, command: str) -> str:
        a = self.args
        missed = self.failures()
        verdict = "**all targets met**" if not missed else "**missed:** " + "; ".join(missed)
        email = sorted(self.email_ours, key=lambda r: r.wall)[len(self.email_ours) // 2]
        sms = sorted(self.sms_ours, key=lambda r: r.wall)[len(self.sms_ours) // 2]
        floor = (a.sms - 1) / a.rate + a.latency_ms / 1000
        time_goes = (
            f"- E-mail (the run with the median wall time, {email.wall:.2f} s): the ledger's claim of the "
            f"{a.emails:,} rows, in one thread before the first send, took {email.claim_seconds:.2f} s; the "
            f"per-request ledger writes {email.ledger_seconds - email.claim_seconds:.2f} s and the "
            f"{email.requests} SendGrid calls {email.http_seconds:.2f} s, summed over the sending threads (up to 4 "
            f"at once); the rest is validation and building the payloads.\n"
            f"- SMS (median run, {sms.wall:.2f} s): the rate limiter sets the floor, (n - 1) / rate + one call = "
            f"{floor:.2f} s; the ledger took {sms.ledger_seconds:.2f} thread-s (claim {sms.claim_seconds:.2f} s, "
            f"before the first send), the Twilio calls {sms.http_seconds:.1f} thread-s (16 in flight at most)."
        )
        return f"""## connect_fanout — Send Email / Send SMS fan-out against the original plan

Requirement: in one run against the sandbox, compare our operators with the original plan's one call per
recipient: 10,000 e-mails must take at least {EMAIL_TARGET:.0f}x fewer HTTP requests; when the sender's rate limit
is the bottleneck, 1,000 SMS must reach at least {RATE_TARGET:.0%} of that rate.

- Command: `{command}` (or `make bench`, which runs every `bench/*.py`); `--quick` for a smoke run.
- Machine: {machine()}.
- Setup: the sandbox runs in its own process (`python -m demobank.sandbox --workers {a.sandbox_workers}`, SQLite
  records); real SDKs over HTTP on 127.0.0.1; our operators run their real `execute()` with a minimal context
  (hooks from `AIRFLOW_CONN_*`, the exactly-once ledger on a migrated SQLite suite DB, a fresh run id per run,
  default retry policy). A 500 is an unknown outcome: it is looked up at the sandbox before it is sent again,
  trusted {RECONCILE_AFTER:g} s after the request (the connections' `reconcile_after_seconds`: the sandbox shows a
  send at once). Twilio connection `rate_limit_per_second` = {a.rate:g}; every Twilio call takes
  {a.latency_ms} ms in the sandbox (like Twilio's API); SendGrid calls get no added latency. Ours: {a.repeat}
  run(s) of each, medians (min-max for wall times). The original plan's code as written: its Python SendGrid
  sample builds a new `SendGridAPIClient` per e-mail, its TypeScript Twilio sample reuses one module-level client.
  Its runs are single runs; a smaller run is scaled linearly (one request per recipient, one after the other).
- Result: {verdict}.

### E-mail: {a.emails:,} recipients

{self.email_table()}

### SMS: {a.sms:,} messages, sender limited to {a.rate:g}/s, {a.latency_ms} ms per Twilio call

{self.sms_table()}

Columns:
- **HTTP requests**: requests this process sent to the vendor APIs during the send, counted at `http.client`
  (retries and refused requests included); **accepted by sandbox**: the sends the sandbox recorded (one e-mail
  record per accepted request, with its recipients).
- **wall s**: the whole send: for ours, `execute()` from validation through the ledger writes.
- **recipients/s**, **delivered msgs/s**: messages divided by wall time; **of rate limit**: delivered msgs/s divided
  by the connection's `rate_limit_per_second` (target ≥ {RATE_TARGET:.0%}); **requests/s**: HTTP requests divided by
  wall time (with faults this includes the retries, which use the same rate budget: with {a.fault_rate:.0%} of
  requests refused, delivered msgs/s can be at most {1 - a.fault_rate:.0%} of the limit, less the tail of the last
  retries waiting for Retry-After).
- **busiest 1 s**: the most requests that started within any one-second interval, the highest of the runs and
  (in parentheses) the median. The limiter hands out send slots 1/rate apart, so more than rate + 1 means that
  sends which were late for their slots went out together; the first run in the process is the cold one (SDK
  modules imported lazily on first use), as in every Airflow task process.
- **requests vs plan**: the plan's requests divided by ours (target ≥ {EMAIL_TARGET:.0f}x); **speed vs plan**: our
  delivered msgs/s divided by the plan's.
- **each … once**: the sandbox recorded every recipient exactly once (and, for ours, the ledger has every message
  `accepted` with distinct SIDs).

Where the time goes:
{time_goes}
"""


def run(args: argparse.Namespace) -> Results:
    with tempfile.TemporaryDirectory(prefix="bench-connect-") as tmp:
        workdir = Path(tmp)
        with SandboxProcess(workdir, workers=args.sandbox_workers) as sandbox:
            configure(workdir, sandbox.url, args.rate)
            progress(f"sandbox at {sandbox.url} ({args.sandbox_workers} worker(s)); e-mail: original plan, "
                     f"{args.baseline_emails:,} recipients")
            email_base = baseline_email(sandbox, args.baseline_emails)
            progress(f"  {email_base.wall:.1f} s, {email_base.requests:,} requests")
            email_ours = []
            for i in range(args.repeat):
                email_ours.append(ours_email(sandbox, args.emails))
                progress(f"e-mail: ours {i + 1}/{args.repeat}: {email_ours[-1].wall:.2f} s, "
                         f"{email_ours[-1].requests} requests")
            progress(f"SMS: original plan, {args.baseline_sms:,} messages at {args.latency_ms} ms per call")
            sms_base = baseline_sms(sandbox, args.baseline_sms, args.latency_ms)
            progress(f"  {sms_base.wall:.1f} s, {sms_base.per_second:.1f} msgs/s")
            sms_ours, sms_faults = [], []
            for i in range(args.repeat):
                sms_ours.append(ours_sms(sandbox, args.sms, args.latency_ms))
                progress(f"SMS: ours {i + 1}/{args.repeat}: {sms_ours[-1].wall:.1f} s, "
                         f"{sms_ours[-1].per_second:.1f} msgs/s")
            for i in range(args.repeat):
                sms_faults.append(ours_sms(sandbox, args.sms, args.latency_ms, args.fault_rate))
                progress(f"SMS with faults: ours {i + 1}/{args.repeat}: {sms_faults[-1].wall:.1f} s, "
                         f"{sms_faults[-1].per_second:.1f} msgs/s, {sms_faults[-1].requests} requests")
    return Results(args, email_base, email_ours, sms_base, sms_ours, sms_faults)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results = run(args)
    shown = " ".join(sys.argv[1:]) if argv is None else " ".join(argv)
    command = f".venv/bin/python bench/{NAME}.py" + (f" {shown}" if shown else "")
    report = results.markdown(command)
    return finish(NAME, report, results.failures(), write=args.write, started=started)


if __name__ == "__main__":
    sys.exit(main())
